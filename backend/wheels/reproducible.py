"""A finished wheel made independent of when, where and in which order its build wrote it.

- **members** in one order: the package's files sorted by name, then the
  ``.dist-info`` folder's, ``RECORD`` last (a build's order follows the file
  system's directory order, which differs between two folders);
- **times**: every member at ``SOURCE_DATE_EPOCH`` (UTC);
- **permissions**: 0755 where the build made the file executable, else 0644
  (umask and the build's copies decide the rest);
- **nvcc's temporary names**: nvcc compiles each ``.cu`` through
  ``/tmp/tmpxft_<pid in hex>_<counter>-<n>_<name>.cudafe1.cpp``
  (``/tmpxft_%08x_%08x`` in nvcc's binary, the first number from
  ``getpid``), and GCC names that file in the object's ``STT_FILE`` symbol,
  so every object of every nvcc compile, and every library linked from them,
  holds the process id of the nvcc that compiled it, and the linker's
  ``.note.gnu.build-id`` (a hash of the output) differs with it.  No nvcc
  option or environment variable names those files otherwise.  The ids are
  set to zero (same length, so nothing moves) and the build id is computed
  again: SHA-1 of the file with the note's bytes zeroed, as long as the old
  one;
- ``RECORD``: rows in the members' order, hashes of changed members renewed.

Applied by ``built.py`` in its one pass over a built wheel (``read(epoch=)``):
members are copied as their compressed bytes (``rawzip``); only changed ELF
files and ``RECORD`` are compressed anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
import zipfile

from elftools.elf.elffile import ELFFile

TMPXFT = re.compile(rb"tmpxft_[0-9a-f]{8}_[0-9a-f]{8}")
TMPXFT_FIXED = b"tmpxft_00000000_00000000"
ELF_MAGIC = b"\x7fELF"


def member_order_key(name: str) -> tuple[int, str]:
    """Package files by name, then ``*.dist-info/`` files by name, RECORD last."""
    if name.split("/", 1)[0].endswith(".dist-info"):
        return (2 if name.endswith("/RECORD") else 1, name)
    return (0, name)


def normalized_mode(info: zipfile.ZipInfo) -> int:
    return 0o755 if (info.external_attr >> 16) & 0o111 else 0o644


def zip_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    year, *rest = time.gmtime(max(epoch, 315532800))[:6]
    return (min(year, 2107), *rest)  # type: ignore[return-value] - zip's DOS times end in 2107


def normalize_elf(data: bytes) -> bytes:
    """``data`` with nvcc's temporary-file ids zeroed and, when that changed it, its build id recomputed."""
    if not data.startswith(ELF_MAGIC) or not TMPXFT.search(data):
        return data
    fixed = bytearray(TMPXFT.sub(TMPXFT_FIXED, data))
    note = build_id_span(bytes(fixed))
    if note is not None:
        start, end = note
        fixed[start:end] = bytes(end - start)
        digest = hashlib.sha1(fixed).digest()
        length = end - start
        fixed[start:end] = (digest * (length // len(digest) + 1))[:length]
    return bytes(fixed)


def build_id_span(data: bytes) -> tuple[int, int] | None:
    """Where the GNU build id's bytes lie in an ELF file (the descriptor of its NT_GNU_BUILD_ID note)."""
    # pyelftools raises many kinds on a damaged file: then no build id
    with contextlib.suppress(Exception):
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".note.gnu.build-id")
        for note in section.iter_notes() if section is not None else ():
            if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                start = note["n_offset"] + 12 + (note["n_namesz"] + 3) // 4 * 4  # after the header and name
                return start, start + note["n_descsz"]
    return None
