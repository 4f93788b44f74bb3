"""Copy zip members as their compressed bytes, and write new ones beside them.

:mod:`zipfile` can only write a member by compressing it again; a wheel of
torch holds close to a gigabyte of deflated shared libraries, and
recompressing them to change one line of METADATA would take a minute.  This
writer copies each member's compressed bytes as they are (same method, CRC
and sizes), as :func:`read_raw` read them (``built.py`` reads each member
once, for its checks and this copy), under the same or a new name, and
writes small new members deflated.  zipfile itself writes every header (its
``ZipInfo.FileHeader``) and the central directory (its ``close``), ZIP64
records included where sizes, offsets or the member count need them; local
headers are written without data descriptors.
"""

from __future__ import annotations

import struct
import time
import zipfile
import zlib
from typing import BinaryIO

# Bits worth keeping from the source: encryption (0) never occurs in wheels;
# compression options (1, 2) describe the deflate stream we copy unchanged.
KEEP_FLAGS = 0x06
# A fixed, valid DOS timestamp for new members of reproducible archives.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def read_raw(source: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """One member's compressed bytes, read once from the archive (after its local header)."""
    src = source.fp
    assert src is not None
    src.seek(info.header_offset)
    header = src.read(zipfile.sizeFileHeader)
    if len(header) < zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
        raise zipfile.BadZipFile(f"{info.filename}: bad local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    src.seek(name_len + extra_len, 1)
    data = src.read(info.compress_size)
    if len(data) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename}: the archive ends inside the member")
    return data


class RawZipWriter:
    """Write a zip archive to an open binary file, copying or adding members."""

    def __init__(self, fp: BinaryIO):
        self.archive = zipfile.ZipFile(fp, "w")
        # zipfile writes the central directory when closed or collected if the archive is marked modified
        # (it is, from the start): only close() marks it, so a writer dropped half way (a failed copy)
        # writes nothing into its closed file when collected
        self.archive._didModify = False

    def _write(self, entry: zipfile.ZipInfo, packed: bytes) -> None:
        """``entry``'s local header and its compressed bytes, listed for the central directory (as
        ``ZipFile.mkdir`` lists a member it writes itself)."""
        archive = self.archive
        entry.header_offset = archive.fp.tell()
        archive.fp.write(entry.FileHeader())
        archive.fp.write(packed)
        archive.filelist.append(entry)
        archive.NameToInfo[entry.filename] = entry
        archive.start_dir = archive.fp.tell()

    def copy(self, info: zipfile.ZipInfo, data: bytes, new_name: str | None = None, *,
             date_time: tuple[int, int, int, int, int, int] | None = None, mode: int | None = None) -> None:
        """Copy one member, as :func:`read_raw` read it, by its compressed bytes, optionally renamed, its time
        and permissions optionally replaced (``mode``: a regular file's permission bits)."""
        if info.flag_bits & 0x1:
            raise ValueError(f"{info.filename}: encrypted zip members are not supported")
        entry = zipfile.ZipInfo(new_name if new_name is not None else info.filename, date_time or info.date_time)
        entry.flag_bits = info.flag_bits & KEEP_FLAGS
        entry.compress_type, entry.CRC = info.compress_type, info.CRC
        entry.compress_size, entry.file_size = info.compress_size, info.file_size
        entry.create_version, entry.extract_version = info.create_version, max(info.extract_version, 20)
        entry.create_system = 3 if mode is not None else info.create_system
        entry.internal_attr, entry.comment = info.internal_attr, info.comment
        entry.external_attr = info.external_attr if mode is None else (0o100000 | mode) << 16
        self._write(entry, data)

    def add(self, name: str, data: bytes, *, date_time: tuple[int, int, int, int, int, int] | None = None,
            mode: int = 0o644) -> None:
        """Add a new member, deflated."""
        entry = zipfile.ZipInfo(name, date_time or time.localtime()[:6])
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        packed = deflater.compress(data) + deflater.flush()
        entry.compress_type, entry.CRC = zipfile.ZIP_DEFLATED, zlib.crc32(data)
        entry.compress_size, entry.file_size = len(packed), len(data)
        entry.create_system, entry.external_attr = 3, (0o100000 | mode) << 16
        self._write(entry, packed)

    def close(self) -> None:
        """Write the central directory and the end records."""
        self.archive._didModify = True
        self.archive.close()
