"""The one exception type users see as a single line, never as a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BackendError(Exception):
    """A problem the user can fix; its message is one line, printed as is."""


class SettingError(BackendError):
    """A setting has a bad value; the message names it, the value and what is accepted."""

    def __init__(self, key: str, value: object, accepted: Iterable[str] | str, why: str = ""):
        accepted_list = [accepted] if isinstance(accepted, str) else list(accepted)
        hint = suggest(str(value), accepted_list)
        shown = ", ".join(accepted_list)
        message = f"setting '{key}': bad value {value!r}"
        if why:
            message += f" ({why})"
        message += f"; accepted: {shown}"
        if hint:
            message += f"; did you mean {hint!r}?"
        super().__init__(message)
        self.key = key
        self.value = value


def suggest(value: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a near-miss value, or None."""
    normalized = {c.replace("-", "").replace("_", "").lower(): c for c in choices}
    squashed = value.replace("-", "").replace("_", "").lower()
    if squashed in normalized:
        return normalized[squashed]
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def describe_os_error(error: OSError) -> str:
    """One line for a file-system error nothing closer to it explained (disk full, read-only folder...)."""
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
    what = error.strerror or str(error) or type(error).__name__
    return f"{where}: {what}" if where else what
