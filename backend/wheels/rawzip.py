"""Copy zip members as their compressed bytes, and write new ones beside them.

:mod:`zipfile` can only write a member by compressing it again; a wheel of
torch holds close to a gigabyte of deflated shared libraries, and
recompressing them to change one line of METADATA would take a minute.  This
writer copies each member's compressed bytes as they are (same method, CRC
and sizes), as :func:`read_raw` read them (``built.py`` reads each member
once, for its checks and this copy), under the same or a new name, and
writes small new members deflated.  Local headers are written without data descriptors; ZIP64 records
are written where sizes, offsets or the member count need them.
"""

from __future__ import annotations

import struct
import time
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
EOCD_SIG = 0x06054B50
ZIP64_EOCD_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50
ZIP64_LIMIT = 0xFFFFFFFF
COUNT_LIMIT = 0xFFFF
UTF8_FLAG = 0x800
DESCRIPTOR_FLAG = 0x08
# Bits worth keeping from the source: encryption (0) never occurs in wheels;
# compression options (1, 2) describe the deflate stream we copy unchanged.
KEEP_FLAGS = 0x06
# A fixed, valid DOS timestamp for new members of reproducible archives.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class _Entry:
    name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc: int
    compress_size: int
    file_size: int
    offset: int
    create_version: int
    create_system: int
    extract_version: int
    internal_attr: int
    external_attr: int
    comment: bytes


def _dos(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    year = max(1980, min(2107, year))
    dos_date = (year - 1980) << 9 | month << 5 | day
    dos_time = hour << 11 | minute << 5 | (second // 2)
    return dos_time, dos_date


def _encode_name(name: str) -> tuple[bytes, int]:
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), UTF8_FLAG


@dataclass
class RawMember:
    header: bytes   # the local header as it lies in the archive (signature, fields, name, extra)
    data: bytes     # the compressed bytes


def read_raw(source: zipfile.ZipFile, info: zipfile.ZipInfo) -> RawMember:
    """One member's local header and compressed bytes, read once from the archive."""
    src = source.fp
    assert src is not None
    src.seek(info.header_offset)
    fixed = src.read(30)
    if len(fixed) < 30 or struct.unpack("<I", fixed[:4])[0] != LOCAL_SIG:
        raise zipfile.BadZipFile(f"{info.filename}: bad local header")
    name_len, extra_len = struct.unpack("<HH", fixed[26:30])
    rest = src.read(name_len + extra_len)
    data = src.read(info.compress_size)
    if len(data) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename}: the archive ends inside the member")
    return RawMember(fixed + rest, data)


class RawZipWriter:
    """Write a zip archive to an open binary file, copying or adding members."""

    def __init__(self, fp: BinaryIO):
        self.fp = fp
        self.entries: list[_Entry] = []
        self.position = fp.tell()

    def _write(self, data: bytes) -> None:
        self.fp.write(data)
        self.position += len(data)

    def _local_header(self, entry: _Entry) -> None:
        extra = b""
        compress_size, file_size = entry.compress_size, entry.file_size
        extract_version = entry.extract_version
        if compress_size >= ZIP64_LIMIT or file_size >= ZIP64_LIMIT:
            extra = struct.pack("<HHQQ", 1, 16, file_size, compress_size)
            compress_size = file_size = ZIP64_LIMIT
            extract_version = max(extract_version, 45)
        header = struct.pack("<IHHHHHIIIHH", LOCAL_SIG, extract_version, entry.flags, entry.method, entry.dos_time,
                             entry.dos_date, entry.crc, compress_size, file_size, len(entry.name), len(extra))
        self._write(header + entry.name + extra)

    def copy(self, info: zipfile.ZipInfo, raw: RawMember, new_name: str | None = None, *,
             date_time: tuple[int, int, int, int, int, int] | None = None, mode: int | None = None) -> None:
        """Copy one member, as :func:`read_raw` read it, by its compressed bytes, optionally renamed, its time
        and permissions optionally replaced (``mode``: a regular file's permission bits)."""
        if info.flag_bits & 0x1:
            raise ValueError(f"{info.filename}: encrypted zip members are not supported")
        name, utf8 = _encode_name(new_name if new_name is not None else info.filename)
        same = raw.header[30:30 + struct.unpack("<H", raw.header[26:28])[0]] == name
        keep = same and not info.flag_bits & DESCRIPTOR_FLAG and date_time is None and mode is None
        # Same name, sizes in the local header: the header is copied too, with its flags and times.
        extract_version, flags, method, dos_time, dos_date = struct.unpack("<HHHHH", raw.header[4:14])
        if not keep:
            (dos_time, dos_date), flags = _dos(date_time or info.date_time), (info.flag_bits & KEEP_FLAGS) | utf8
            extract_version, method = max(info.extract_version, 20), info.compress_type
        entry = _Entry(
            name=name, flags=flags, method=method, dos_time=dos_time, dos_date=dos_date, crc=info.CRC,
            compress_size=info.compress_size, file_size=info.file_size, offset=self.position,
            create_version=info.create_version, create_system=3 if mode is not None else info.create_system,
            extract_version=extract_version, internal_attr=info.internal_attr,
            external_attr=info.external_attr if mode is None else (0o100000 | mode) << 16, comment=info.comment,
        )
        if keep:
            self._write(raw.header)
        else:
            self._local_header(entry)
        self._write(raw.data)
        self.entries.append(entry)

    def add(
        self,
        name: str,
        data: bytes,
        *,
        date_time: tuple[int, int, int, int, int, int] | None = None,
        mode: int = 0o644,
        compress: bool = True,
    ) -> None:
        """Add a new member, deflated (or stored when that is smaller or asked)."""
        encoded, utf8 = _encode_name(name)
        if compress:
            deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            packed = deflater.compress(data) + deflater.flush()
            method = zipfile.ZIP_DEFLATED
        else:
            packed, method = data, zipfile.ZIP_STORED
        dos_time, dos_date = _dos(date_time or time.localtime()[:6])
        entry = _Entry(
            name=encoded,
            flags=utf8,
            method=method,
            dos_time=dos_time,
            dos_date=dos_date,
            crc=zlib.crc32(data) & 0xFFFFFFFF,
            compress_size=len(packed),
            file_size=len(data),
            offset=self.position,
            create_version=20,
            create_system=3,
            extract_version=20,
            internal_attr=0,
            external_attr=(0o100000 | mode) << 16,
            comment=b"",
        )
        self._local_header(entry)
        self._write(packed)
        self.entries.append(entry)

    def close(self) -> None:
        """Write the central directory and the end records."""
        directory_start = self.position
        for entry in self.entries:
            extra_values: list[int] = []
            compress_size, file_size, offset = entry.compress_size, entry.file_size, entry.offset
            if file_size >= ZIP64_LIMIT:
                extra_values.append(file_size)
                file_size = ZIP64_LIMIT
            if compress_size >= ZIP64_LIMIT:
                extra_values.append(compress_size)
                compress_size = ZIP64_LIMIT
            if offset >= ZIP64_LIMIT:
                extra_values.append(offset)
                offset = ZIP64_LIMIT
            extra = b""
            extract_version = entry.extract_version
            create_version = entry.create_version
            if extra_values:
                extra = struct.pack("<HH", 1, 8 * len(extra_values)) + b"".join(
                    struct.pack("<Q", v) for v in extra_values
                )
                extract_version = max(extract_version, 45)
                create_version = max(create_version, 45)
            record = struct.pack(
                "<IBBHHHHHIIIHHHHHII",
                CENTRAL_SIG,
                create_version,
                entry.create_system,
                extract_version,
                entry.flags,
                entry.method,
                entry.dos_time,
                entry.dos_date,
                entry.crc,
                compress_size,
                file_size,
                len(entry.name),
                len(extra),
                len(entry.comment),
                0,
                entry.internal_attr,
                entry.external_attr,
                offset,
            )
            self._write(record + entry.name + extra + entry.comment)
        directory_end = self.position
        size = directory_end - directory_start
        count = len(self.entries)
        if count >= COUNT_LIMIT or size >= ZIP64_LIMIT or directory_start >= ZIP64_LIMIT:
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ", ZIP64_EOCD_SIG, 44, 45, 45, 0, 0, count, count, size, directory_start
                )
            )
            self._write(struct.pack("<IIQI", ZIP64_LOCATOR_SIG, 0, directory_end, 1))
            self._write(
                struct.pack(
                    "<IHHHHIIH",
                    EOCD_SIG,
                    0,
                    0,
                    min(count, COUNT_LIMIT),
                    min(count, COUNT_LIMIT),
                    min(size, ZIP64_LIMIT),
                    min(directory_start, ZIP64_LIMIT),
                    0,
                )
            )
        else:
            self._write(struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, count, count, size, directory_start, 0))
