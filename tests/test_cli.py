"""`python -m backend` as a user runs it: matrix, plan, detect, and errors as one line."""

import json
import platform

import pytest

from backend.cli import detect_variant
from backend.host import Gpu, Host


def test_matrix_with_python_313_lists_the_seed_names(run_backend):
    out = run_backend("matrix", "--python", "3.13", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    seed = [r["name"] for r in rows if r["seed"]]
    assert len(seed) == 88
    assert "vllm-python313-cuda12_9-sm90-avx512" in seed
    assert "vllm-python313-cuda12_8-sm103-avx512" not in seed
    extension = [r for r in rows if not r["seed"]]
    assert extension and all(r["cuda"] == "13.0" for r in extension)
    assert {"name", "sm", "isa", "cuda", "platform"} <= set(rows[0])


def test_matrix_table_marks_cuda13_rows(run_backend):
    out = run_backend("matrix", "--python", "3.13")
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if l.startswith("vllm-python313-cuda13_0-sm90-avx512"))
    assert "extension" in line
    assert "88 of the seed's matrix" in out.stdout


def test_matrix_defaults_to_running_python(run_backend):
    import sys

    out = run_backend("matrix", "--json", "--cuda", "12.9")
    tag = f"python{sys.version_info.major}{sys.version_info.minor}"
    assert all(tag in r["name"] for r in json.loads(out.stdout))


BAD = [
    (["-C", "sm=91", "-C", "isa=avx2"], ["'sm'", "'91'", "did you mean '90'"]),
    (["-C", "sm=90", "-C", "isa=avx-512"], ["'isa'", "'avx-512'", "did you mean 'avx512'"]),
    (["-C", "sm=103", "-C", "isa=avx2", "-C", "cuda=12.8"], ["'cuda'", "'12.8'", "sm=103", "12.9"]),
    (["-C", "sm=61", "-C", "isa=avx512"], ["'isa'", "'avx512'", "sm=61", "avx, avx2"]),
    (["-C", "sm=90", "-C", "isa=armv9"], ["'isa'", "'armv9'", "aarch64"]),
    (["-C", "sm=90", "-C", "sm=80", "-C", "isa=avx2"], ["'sm'", "given 2 times"]),
    (["-C", "smm=90"], ["unknown setting 'smm'", "did you mean 'sm'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "jobs=0"], ["'jobs'", "'0'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "jobs=abc"], ["'jobs'", "'abc'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "components=foo"], ["'components'", "'foo'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "source.torch=/nonexistent/torch"], ["'source.torch'", "does not exist"]),
]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the armv9-on-x86 case assumes an x86_64 host")
@pytest.mark.parametrize("args, parts", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_plan_bad_input_is_one_line_without_traceback(run_backend, args, parts):
    out = run_backend("plan", *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_detect_without_gpu_still_reports_isa(run_backend):
    out = run_backend("detect", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["isa"] in ("avx512bf16", "avx512vnni", "avx512", "avx2", "avx", "armv9", "armv8_2")
    if not data["gpus"]:
        assert data["sm"] is None
        assert any("no NVIDIA GPU" in r for r in data["remarks"])
    assert data["command"][:3] == ["pip", "wheel", "."]


def test_detect_maps_host_to_variant():
    h100_host = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw avx512_vnni".split()),
                     gpus=(Gpu("NVIDIA H100", "90"),))
    assert detect_variant(h100_host)[:2] == ("90", "avx512vnni")
    pascal = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw".split()),
                  gpus=(Gpu("Tesla P40", "61"),))
    assert detect_variant(pascal)[:2] == ("61", "avx2")
    grace = Host("aarch64", frozenset("asimdhp asimddp sve2 svebf16 svei8mm".split()), gpus=(Gpu("GH200", "90"),))
    assert detect_variant(grace)[:2] == ("90", "armv9")
    jetson = Host("aarch64", frozenset("asimdhp asimddp".split()), gpus=(Gpu("Orin", "87"),))
    sm, isa, remarks = detect_variant(jetson)
    assert sm is None and any("sm_87" in r for r in remarks)
