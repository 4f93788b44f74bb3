"""What a built wheel declares beyond its own METADATA: the CUDA libraries it links, and its recipe's pins.

Four sources, the first that names a distribution wins:

1. the toolchain's exact pins, when CUDA came from PyPI (what was built against);
2. the runtime its generated protobuf and gRPC modules check when imported
   (``*_pb2.py``: ``ValidateProtobufRuntimeVersion(PUBLIC, 7, 35, 1, ...)`` ->
   ``protobuf>=7.35.1,<9``; ``*_pb2_grpc.py``: ``GRPC_GENERATED_VERSION = '1.85.1'``
   -> ``grpcio>=1.85.1``): vLLM generates its stubs at build time with whatever
   grpcio-tools the build has, so only the wheel says which runtime loads them;
3. what the recipe says the upstream wheel declares (torch: ``triton==3.5.1`` and
   PyTorch's own ``nvidia-*`` pins for that CUDA, from its release build's
   ``PYTORCH_EXTRA_INSTALL_REQUIREMENTS``);
4. the wheel's real DT_NEEDED entries (``libcublas.so.13`` -> ``nvidia-cublas>=13,<14``).

Markers are dropped: the wheel installs on its one platform only, and PyTorch's
``platform_machine == 'x86_64'`` would drop them on aarch64.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..toolchains.runtime import needed_sonames, requirements_for
from . import built, names


# protobuf's generated code (protoc's python generator since protobuf 5.26) calls
# google/protobuf/runtime_version.py on import, which raises VersionError when the runtime is older
# than the gencode; protobuf's cross-version guarantee lets a runtime one major newer load it
# (https://protobuf.dev/support/cross-version-runtime-guarantee).  grpcio-tools' generated
# *_pb2_grpc.py raises RuntimeError when grpcio is older than GRPC_GENERATED_VERSION.
PROTOBUF_GENCODE = re.compile(
    rb"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),")
GRPC_GENCODE = re.compile(rb"^GRPC_GENERATED_VERSION = '([0-9][0-9.]*)'", re.MULTILINE)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")


def is_generated(member: str) -> bool:
    """A generated protobuf or gRPC module, kept when the wheel is read (``built.read(keep=)``)."""
    return member.endswith(GENERATED_SUFFIXES)


def generated_code_requirements(wheel: built.BuiltWheel) -> list[str]:
    """The protobuf and grpcio the wheel's generated ``*_pb2.py`` / ``*_pb2_grpc.py`` modules accept, or [].
    ``wheel``: read once keeping :func:`is_generated` members (``wheels.built``)."""
    kept = wheel.kept.values()  # read keeping is_generated members only
    protobuf = max((tuple(int(part) for part in found.groups())
                    for data in kept for found in PROTOBUF_GENCODE.finditer(data)), default=None)
    grpc = max((tuple(int(part) for part in found.group(1).decode().split(".") if part)
                for data in kept for found in GRPC_GENCODE.finditer(data)), default=None)
    out = []
    if protobuf:
        out.append(f"protobuf>={'.'.join(map(str, protobuf))},<{protobuf[0] + 2}")
    if grpc:
        out.append(f"grpcio>={'.'.join(map(str, grpc))}")
    return out


def merge(toolchain_pins: Sequence[str], declared: Sequence[str], linked: Sequence[str],
          generated: Sequence[str] = ()) -> list[str]:
    """One requirement per distribution, in the precedence above; generated, then declared order first."""
    pinned = {canonicalize_name(Requirement(p).name): p for p in toolchain_pins}
    out: dict[str, str] = {}
    for text in list(generated) + list(declared) + list(linked):
        requirement = Requirement(text)
        requirement.marker = None
        name = canonicalize_name(requirement.name)
        out.setdefault(name, pinned.get(name, str(requirement)))
    return list(out.values())


def declared_requirements(wheel, recipe, variant, toolchain) -> list[str]:
    """The Requires-Dist lines the pipeline adds to ``wheel`` (a wheel of ``recipe``: a path, or read once
    keeping :func:`is_generated` members, ``wheels.built``)."""
    wheel = built.read_once(wheel, scan_code=False, keep=is_generated)
    pins = toolchain.requirements if toolchain is not None else ()
    linked = requirements_for(needed_sonames(wheel), variant.cuda, pins) if toolchain is not None else []
    own = names.project(wheel.name) == canonicalize_name(recipe.distributions[0])
    declared = recipe.runtime_requires(variant) if own else ()
    return merge(pins, declared, linked, generated_code_requirements(wheel))
