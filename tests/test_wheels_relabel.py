"""relabel(): new version and pins, members copied compressed, accepted by wheel and pip."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.wheels.relabel import edit_metadata, relabel
from conftest import make_wheel
from test_wheels_support import check_record, installed, make_venv, pip_install

LABEL = "cu129.sm90.avx512"


def raw_member(path: Path, info: zipfile.ZipInfo) -> bytes:
    """The compressed bytes of a member, read from its local header on."""
    import struct

    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        return handle.read(info.compress_size)


def metadata_of(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


@pytest.fixture
def vllm_wheel(tmp_path):
    return make_wheel(
        tmp_path / "in",
        "vllm",
        "0.15.1",
        requires=(
            "torch==2.9.1",
            "Torch_Audio==2.9.1",
            'xformers[extra]==0.0.33; platform_system == "Linux"',
            "numpy>=1.26",
        ),
        data_files={"scripts/vllm-run": b"#!python\nprint('hi')\n", "data/share/vllm.txt": b"data"},
        big=2_000_000,
    )


def test_version_pins_and_added_requirements(tmp_path, vllm_wheel):
    out = relabel(
        vllm_wheel,
        tmp_path / "out",
        version=f"0.15.1+{LABEL}",
        pins={"torch": f"2.9.1+{LABEL}", "torch-audio": f"2.9.1+{LABEL}", "xformers": f"0.0.33+{LABEL}"},
        add_requires=["nvidia-cuda-runtime==13.0.96"],
    )
    assert out.name == f"vllm-0.15.1+{LABEL}-py3-none-any.whl"
    assert out.parent == tmp_path / "out"
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert f"vllm-0.15.1+{LABEL}.dist-info/METADATA" in names
    assert f"vllm-0.15.1+{LABEL}.data/scripts/vllm-run" in names
    assert not any(n.startswith(("vllm-0.15.1.dist-info", "vllm-0.15.1.data")) for n in names)
    text = metadata_of(out)
    assert f"Version: 0.15.1+{LABEL}\n" in text
    assert f"Requires-Dist: torch==2.9.1+{LABEL}\n" in text
    assert f"Requires-Dist: Torch_Audio==2.9.1+{LABEL}\n" in text
    assert f'Requires-Dist: xformers[extra]==0.0.33+{LABEL}; platform_system == "Linux"\n' in text
    assert "Requires-Dist: numpy>=1.26\n" in text
    assert "Requires-Dist: nvidia-cuda-runtime==13.0.96\n" in text
    # The body is kept byte for byte, its "Version:" line included.
    assert text.endswith("With a body line: Version: not-a-header\n")
    check_record(out)
    # The source is untouched.
    check_record(vllm_wheel)


def test_untouched_members_keep_their_compressed_bytes(tmp_path, vllm_wheel):
    out = relabel(vllm_wheel, tmp_path / "out", version=f"0.15.1+{LABEL}", pins={"torch": f"2.9.1+{LABEL}"})
    with zipfile.ZipFile(vllm_wheel) as old, zipfile.ZipFile(out) as new:
        old_infos = {i.filename.replace("vllm-0.15.1.", f"vllm-0.15.1+{LABEL}."): i for i in old.infolist()}
        new_infos = {i.filename: i for i in new.infolist()}
        assert list(old_infos) == list(new_infos)  # order kept
        changed = {f"vllm-0.15.1+{LABEL}.dist-info/METADATA", f"vllm-0.15.1+{LABEL}.dist-info/RECORD"}
        for name, info in new_infos.items():
            before = old_infos[name]
            if name in changed:
                continue
            assert info.compress_type == before.compress_type == zipfile.ZIP_DEFLATED
            assert info.compress_size == before.compress_size, name
            assert info.CRC == before.CRC
            assert raw_member(out, info) == raw_member(vllm_wheel, before), name
        blob = new_infos["vllm/blob.txt"]
        assert blob.compress_size < blob.file_size  # really a deflated member copied as is


def test_nothing_to_change_gives_a_valid_identical_copy(tmp_path, vllm_wheel):
    out = relabel(vllm_wheel, tmp_path / "out")
    assert out.name == vllm_wheel.name
    check_record(out)
    with zipfile.ZipFile(vllm_wheel) as old, zipfile.ZipFile(out) as new:
        for a, b in zip(old.infolist(), new.infolist(), strict=True):
            assert a.filename == b.filename
            assert raw_member(vllm_wheel, a) == raw_member(out, b)


def test_same_folder_replaces_atomically(tmp_path, vllm_wheel):
    out = relabel(vllm_wheel, vllm_wheel.parent, pins={"torch": "2.9.1"})
    assert out == vllm_wheel
    check_record(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left


def test_failure_leaves_no_partial_output(tmp_path, vllm_wheel, monkeypatch):
    from backend.wheels import rawzip

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rawzip.RawZipWriter, "close", broken)
    with pytest.raises(OSError):
        relabel(vllm_wheel, tmp_path / "out", version="0.15.2")
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_input_is_one_line_error(tmp_path, vllm_wheel):
    with pytest.raises(BackendError, match="not a valid version"):
        relabel(vllm_wheel, tmp_path, version="2.9.1+cu129.sm90.avx512+x")
    with pytest.raises(BackendError, match="not valid"):
        relabel(vllm_wheel, tmp_path, add_requires=["torch=="])
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="not a readable wheel"):
        relabel(bad, tmp_path / "o")


def test_metadata_edit_keeps_crlf_and_continuations():
    data = (
        b"Metadata-Version: 2.1\r\nName: x\r\nVersion: 1.0\r\nRequires-Dist: torch\r\n"
        b"Summary: long\r\n  continued\r\n\r\nbody\r\nVersion: 3\r\n"
    )
    out = edit_metadata(data, version="1.0+a", pins={"torch": "2.9.1+a"}, add_requires=[])
    assert out == (
        b"Metadata-Version: 2.1\r\nName: x\r\nVersion: 1.0+a\r\nRequires-Dist: torch==2.9.1+a\r\n"
        b"Summary: long\r\n  continued\r\n\r\nbody\r\nVersion: 3\r\n"
    )


def test_wheel_unpack_and_pip_install_accept_relabelled_wheels(tmp_path):
    label_version = f"2.9.1+{LABEL}"
    torch = make_wheel(tmp_path / "in", "torch", "2.9.1", data_files={"scripts/torchrun": b"#!python\nprint(1)\n"})
    vllm = make_wheel(tmp_path / "in", "vllm", "0.15.1", requires=("torch==2.9.1",))
    house = tmp_path / "house"
    new_torch = relabel(torch, house, version=label_version)
    new_vllm = relabel(vllm, house, version=f"0.15.1+{LABEL}", pins={"torch": label_version})
    # A plain torch 2.9.1 next to it: the pin must not let pip take it.
    relabel(torch, house)
    for wheel in (new_torch, new_vllm):
        done = subprocess.run(
            [sys.executable, "-m", "wheel", "unpack", "-d", str(tmp_path / "unpacked"), str(wheel)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, "--find-links", str(house), str(new_vllm))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(python) == {"torch": label_version, "vllm": f"0.15.1+{LABEL}"}
    assert (tmp_path / "venv" / "bin" / "torchrun").exists()  # the renamed .data folder installed
    check = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
    assert check.returncode != 0  # the venv really has no pip of its own: nothing else came in


def _unseekable_wheel(path: Path, members: dict[str, bytes]) -> None:
    """A zip written as a stream: every member has a data descriptor (flag bit 3)."""
    import io

    class Stream(io.RawIOBase):
        def __init__(self):
            self.buffer = bytearray()

        def writable(self):
            return True

        def seekable(self):
            return False

        def write(self, data):
            self.buffer += data
            return len(data)

    stream = Stream()
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            with archive.open(name, "w") as handle:
                handle.write(data)
    path.write_bytes(bytes(stream.buffer))


def test_members_with_data_descriptors(tmp_path):
    source = make_wheel(tmp_path / "src", "tiny", "1.0", big=100_000)
    with zipfile.ZipFile(source) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    streamed = tmp_path / "in" / source.name
    streamed.parent.mkdir()
    _unseekable_wheel(streamed, members)
    with zipfile.ZipFile(streamed) as archive:
        assert all(i.flag_bits & 0x08 for i in archive.infolist())
    out = relabel(streamed, tmp_path / "out", version="1.0+x")
    check_record(out)
    with zipfile.ZipFile(streamed) as old, zipfile.ZipFile(out) as new:
        blob_old, blob_new = old.getinfo("tiny/blob.txt"), new.getinfo("tiny/blob.txt")
        assert raw_member(out, blob_new) == raw_member(streamed, blob_old)
        assert not blob_new.flag_bits & 0x08


def test_more_members_than_a_plain_zip_holds(tmp_path):
    files = {f"many/f{i}.py": b"" for i in range(0x10000 + 10)}
    source = make_wheel(tmp_path / "in", "many", "1.0", files=files)
    out = relabel(source, tmp_path / "out", version="1.0+x")
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        assert len(infos) == len(files) + 3  # METADATA, WHEEL, RECORD
        assert archive.read("many-1.0+x.dist-info/METADATA").startswith(b"Metadata-Version")
        assert archive.read(infos[-1]).endswith(b"many-1.0+x.dist-info/RECORD,,\n")


def test_every_stack_member_is_pinned_and_dropped_ones_come_back(tmp_path):
    """vLLM's wheel after the unpin patch (torch, torchvision, torchaudio gone) gets all three back, exact."""
    from backend import recipes
    from backend.pipeline.pins import restored_requirements, stack_pins
    from backend.pipeline.plan import make_plan
    from backend.settings import resolve
    from backend.variants import Variant

    settings = resolve({"cache-dir": str(tmp_path / "cache"), "sm": "90", "isa": "avx512", "cuda": "13.0"})
    plan = make_plan(settings, Variant(sm="90", isa="avx512", cuda="13.0"), project_dir=tmp_path,
                     cores=8, memory_bytes=64 << 30)
    label = plan.variant.label
    built_vision = tmp_path / f"torchvision-0.24.1+{label}-cp311-cp311-linux_x86_64.whl"
    pins = stack_pins(plan, [built_vision])
    assert pins["torch"] == f"2.9.1+{label}" and pins["torchvision"] == f"0.24.1+{label}"
    assert pins["flashinfer-python"] == pins["flashinfer-jit-cache"] == f"0.6.1+{label}"
    wheel = make_wheel(tmp_path / "in", "vllm", "0.15.1",
                       requires=("flashinfer-python==0.6.1", "numpy>=1.26", "xformers; extra == 'x'"))
    added = restored_requirements(recipes.get("vllm").stack_requires, pins)
    out = relabel(wheel, tmp_path / "out", version=f"0.15.1+{label}", pins=pins, add_requires=added)
    requires = [l.split(": ", 1)[1] for l in metadata_of(out).splitlines() if l.startswith("Requires-Dist:")]
    assert f"flashinfer-python=={pins['flashinfer-python']}" in requires
    assert f"torchvision=={pins['torchvision']}" in requires and f"torchaudio=={pins['torchaudio']}" in requires
    assert f'xformers=={pins["xformers"]}; extra == "x"' in requires
    assert "numpy>=1.26" in requires
    # a member the wheelhouse does not hold is required as upstream names it, any version
    assert restored_requirements(("torchvision",), {"torch": "2.9.1"}) == ["torchvision"]
