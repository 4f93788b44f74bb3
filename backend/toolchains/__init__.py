"""Where the CUDA toolkit of a build comes from: ``-C toolchain=auto|system|nix|pypi``.

``resolve`` returns a :class:`Toolchain` whose ``nvcc --version`` is exactly
the requested major.minor, or raises a one-line
:class:`~backend.errors.BackendError` naming what was tried and the ways out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import PROVIDERS, Toolchain
from .select import build_requirements, resolve

__all__ = ["PROVIDERS", "Toolchain", "build_requirements", "resolve"]
