"""Verification: what each wheel of a wheelhouse contains, checked against its variant.

GPU code (cubins and PTX of every ELF object), CPU code (x86 extensions used,
ISA flags applied), linking (DT_NEEDED providers, torch symbols) and metadata
(label, exact torch pin, RECORD).  docs/VERIFY.md explains the report.
"""

from .checks import Expectation, verify_objects, verify_paths, verify_wheel
from .report import Entry, ObjectEntry, Problem, Report

__all__ = ["Expectation", "Entry", "ObjectEntry", "Problem", "Report", "verify_objects", "verify_paths", "verify_wheel"]
