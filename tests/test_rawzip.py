"""backend/wheels/rawzip.py: a wheel past 4 GiB (a torch debug build, a fat flashinfer-jit-cache) is written with
ZIP64 records, by zipfile's own header and central-directory code driven through its internals."""

import struct
import zipfile
import zlib

from backend.wheels.rawzip import RawZipWriter, read_raw

BLOCK = 64 << 20


def test_a_member_and_offsets_past_4_gib_are_written_with_zip64_records(tmp_path):
    """A copied 4 GiB + 64 MiB member (its deflate stream is 4 MB of zeros' blocks) at an offset past 5 GiB (the
    file is sparse there), and an added member after it: zipfile reads both back by the ZIP64 records."""
    one = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    piece = one.compress(bytes(BLOCK)) + one.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, history reset: repeatable
    count = 65
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(bytes(BLOCK), crc)
    big = zipfile.ZipInfo("demo/big.bin", (2026, 1, 1, 0, 0, 0))
    big.compress_type, big.CRC = zipfile.ZIP_DEFLATED, crc
    data = piece * count + b"\x03\x00"  # an empty final block ends the stream
    big.file_size, big.compress_size = count * BLOCK, len(data)
    assert big.file_size > 0xFFFFFFFF
    path, start = tmp_path / "demo-1.0-py3-none-any.whl", 5 << 30
    with path.open("wb") as handle:
        handle.seek(start)
        writer = RawZipWriter(handle)
        writer.copy(big, data)
        writer.add("demo/small.txt", b"hello\n", date_time=(2026, 1, 1, 0, 0, 0))
        writer.close()
    with zipfile.ZipFile(path) as archive:
        copied, added = archive.infolist()
        assert (copied.filename, copied.file_size, copied.compress_size, copied.CRC) == (
            "demo/big.bin", big.file_size, len(data), crc)
        local_header = 30 + len("demo/big.bin") + 20  # fixed fields, name, ZIP64 extra
        assert (copied.header_offset, added.header_offset) == (start, start + local_header + len(data))
        assert archive.read("demo/small.txt") == b"hello\n"
        with archive.open("demo/big.bin") as member:
            assert member.read(1 << 20) == bytes(1 << 20)
        assert read_raw(archive, copied) == data
    with path.open("rb") as handle:  # the local header: sizes in its ZIP64 extra field
        handle.seek(start)
        header = handle.read(30 + len("demo/big.bin") + 20)
    assert struct.unpack("<II", header[18:26]) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert struct.unpack("<HHQQ", header[-20:]) == (1, 16, big.file_size, len(data))
