"""PEP 517 / PEP 660 build backend for a vLLM stack compiled for one GPU and one CPU.

The hooks stay thin: settings, plan, pipeline and wheels live in modules
named for their job.  Every user error leaves as one line and a non-zero
exit status, never as a traceback.
"""

from __future__ import annotations

import functools
import sys

# Before anything that needs newer syntax (settings.py's ``X | None`` at run time): one line, not a traceback.
SUPPORTED_PYTHON = ((3, 10), (3, 13))
if sys.version_info[:2] < SUPPORTED_PYTHON[0]:
    raise SystemExit(
        f"error: the vllm-stack backend needs Python {'.'.join(map(str, SUPPORTED_PYTHON[0]))} to "
        f"{'.'.join(map(str, SUPPORTED_PYTHON[1]))}; this is Python {'.'.join(map(str, sys.version_info[:3]))} "
        f"({sys.executable}): run it with a newer interpreter"
    )

from . import needs  # noqa: E402 (after the version guard)
from .errors import BackendError, describe_os_error  # noqa: E402 (after the version guard)
from .interrupts import describe, exit_status, sigterm_interrupts  # noqa: E402 (after the version guard)

__version__ = "0.1.0"


def _one_line_errors(hook):
    @functools.wraps(hook)
    def wrapper(*args, **kwargs):
        try:
            with sigterm_interrupts():
                # Every hook, not only build_wheel: under --no-build-isolation nobody installed them.
                needs.require(f"the PEP 517 hook {hook.__name__}")
                return hook(*args, **kwargs)
        except BackendError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except OSError as error:
            print(f"error: {describe_os_error(error)}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except KeyboardInterrupt as interrupt:
            print(describe(interrupt), file=sys.stderr, flush=True)
            raise SystemExit(exit_status(interrupt)) from None

    return wrapper


@_one_line_errors
def get_requires_for_build_wheel(config_settings=None):
    from . import pep517

    return pep517.build_requirements(config_settings)


@_one_line_errors
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    from . import pep517

    return pep517.prepare_metadata(metadata_directory, config_settings)


@_one_line_errors
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    from . import pep517

    return pep517.build_wheel(wheel_directory, config_settings)


@_one_line_errors
def get_requires_for_build_sdist(config_settings=None):
    return []


@_one_line_errors
def build_sdist(sdist_directory, config_settings=None):
    from . import pep517

    return pep517.build_sdist(sdist_directory)


@_one_line_errors
def get_requires_for_build_editable(config_settings=None):
    from . import pep517

    return pep517.build_requirements(config_settings)


@_one_line_errors
def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    from . import pep517

    return pep517.build_wheel(wheel_directory, config_settings, editable=True)
