"""The variant matrix and its rules, checked against the seed's README."""

import itertools
import re
from pathlib import Path

import pytest

from backend import variants
from backend.errors import BackendError
from backend.host import Host
from backend.cpu_isa import ISAS
from backend.settings import CUDAS, SMS, resolve

# The seed project's build matrix (its README's tables), kept in the repository as test data.
SEED = Path(__file__).resolve().parent / "data" / "seed_build_matrix.md"

X86_AVX512_HOST = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw avx512_bf16 avx512_vnni".split()))
X86_AVX2_HOST = Host("x86_64", frozenset("avx avx2 fma f16c".split()))
GRACE_HOST = Host("aarch64", frozenset("fp asimd asimdhp asimddp sve sve2 svebf16 svei8mm".split()))
ALTRA_HOST = Host("aarch64", frozenset("fp asimd asimdhp asimddp".split()))


def seed_names():
    """The 88 names as the seed README's tables give them."""
    text = SEED.read_text()
    x86 = text.split("### x86_64-linux")[1].split("### aarch64-linux")[0]
    arm = text.split("### aarch64-linux")[1].split("### Total")[0]
    names = []
    for line in x86.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 10 or not cells[1].startswith("SM"):
            continue
        cudas = re.findall(r"12\.\d", cells[-2])
        for cell in cells[4:9]:
            for short in re.findall(r"`(sm\d+-\w+)`", cell):
                names += [f"vllm-python313-cuda{c.replace('.', '_')}-{short}" for c in cudas]
    for line in arm.splitlines():
        short = re.findall(r"`(sm\d+-\w+)`", line)
        if short:
            cudas = re.findall(r"12\.\d", line.split("|")[-2])
            names += [f"vllm-python313-cuda{c.replace('.', '_')}-{short[0]}" for c in cudas]
    return names


def test_seed_matrix_exactly():
    expected = seed_names()
    assert len(expected) == 88
    ours = [v.name for v in variants.matrix(python="313") if v.seed]
    assert sorted(ours) == sorted(expected)
    assert sum(v.cuda == "12.9" for v in variants.matrix(python="313") if v.seed) == 47


def test_cuda13_rows_are_an_extension_without_sm61():
    rows = [v for v in variants.matrix(python="313") if v.cuda == "13.0"]
    assert rows and not any(v.seed for v in rows)
    assert {v.sm for v in rows} == {"75", "80", "86", "89", "90", "100", "103", "120", "121"}  # no sm_61, no sm_70


def test_names_and_labels():
    v = variants.Variant(sm="90", isa="avx512", cuda="12.9", python="313")
    assert v.name == "vllm-python313-cuda12_9-sm90-avx512"
    assert v.label == "cu129.sm90.avx512"
    assert v.target.capability == "9.0"
    assert variants.Variant(sm="103", isa="armv9", cuda="12.9").target.capability == "10.3"


@pytest.mark.parametrize(
    "sm, isa, cuda, fragment",
    [
        ("103", "avx512", "12.8", "sm=103"),
        ("61", "avx512", "12.9", "sm=61"),
        ("61", "avx2", "13.0", "dropped compute_61"),
        ("80", "armv9", "12.9", "isa=armv9"),
        ("100", "armv8_2", "12.9", "isa=armv8_2"),
        # sm_70 (V100): CUDA 12.x only, nvcc 13 dropped it; sm_121 (GB10): CUDA 12.9 on, Arm (armv9) only
        ("70", "avx512", "13.0", "dropped compute_70"),
        ("121", "armv9", "12.8", "sm=121"),
        ("121", "avx512", "12.9", "aarch64"),
        ("121", "armv8_2", "12.9", "isa=armv8_2"),
    ],
)
def test_rules(sm, isa, cuda, fragment):
    why = variants.rule_violation(sm, isa, cuda)
    assert why is not None and fragment in why, why


def test_v100_and_gb10_rows_are_an_extension():
    rows = variants.matrix(python="313")
    v100 = [v for v in rows if v.sm == "70"]
    gb10 = [v for v in rows if v.sm == "121"]
    assert {v.cuda for v in v100} == {"12.9", "12.8"} and {v.platform for v in v100} == {"x86_64"}
    assert [(v.isa, v.cuda) for v in gb10] == [("armv9", "12.9"), ("armv9", "13.0")]
    assert not any(v.seed for v in v100 + gb10)
    assert sum(v.seed for v in rows) == 88
    assert variants.Variant(sm="121", isa="armv9", cuda="12.9").target.capability == "12.1"


def test_sm61_gets_no_cudnn_and_allowed_isas():
    assert not variants.Variant(sm="61", isa="avx2", cuda="12.9").uses_cudnn
    assert variants.rule_violation("61", "avx", "12.8") is None


def test_arm_isa_on_x86_host_is_refused():
    with pytest.raises(BackendError, match="aarch64 ISA and this host is x86_64"):
        variants.select(resolve({"sm": "90", "isa": "armv9"}), host=X86_AVX512_HOST)


def test_x86_isa_on_arm_host_is_refused():
    with pytest.raises(BackendError, match="x86_64 ISA and this host is aarch64"):
        variants.select(resolve({"sm": "90", "isa": "avx2"}), host=GRACE_HOST)


def test_host_must_execute_the_isa():
    with pytest.raises(BackendError) as info:
        variants.select(resolve({"sm": "90", "isa": "avx512"}), host=X86_AVX2_HOST)
    assert "lacks avx512f" in str(info.value) and "accepted here: avx, avx2" in str(info.value)
    with pytest.raises(BackendError, match="lacks sve2"):
        variants.select(resolve({"sm": "90", "isa": "armv9"}), host=ALTRA_HOST)
    assert variants.select(resolve({"sm": "90", "isa": "armv8_2"}), host=ALTRA_HOST).platform == "aarch64"


def test_select_requires_sm_and_isa():
    with pytest.raises(BackendError, match="setting 'sm' is required"):
        variants.select(resolve({"isa": "avx2"}), host=X86_AVX2_HOST)


def test_cuda_rule_through_select():
    with pytest.raises(BackendError, match="'12.8' for sm=103"):
        variants.select(resolve({"sm": "103", "isa": "avx512", "cuda": "12.8"}), host=X86_AVX512_HOST)


@pytest.mark.parametrize("conflict", variants.CONFLICTS, ids=lambda c: f"{c.setting}-{'-'.join(map(str, c.when.values()))}")
def test_every_declared_conflict_is_what_refuses(conflict):
    """Each row of the conflicts table refuses a value it does not accept, naming its reason, and no row refuses
    an accepted one: the table, evaluated by rule_violation, is the matrix's rules."""
    choices = {"sm": SMS, "isa": ISAS, "cuda": CUDAS}
    for when in itertools.product(*(values for values in conflict.when.values())):
        fixed = dict(zip(conflict.when, when))
        others = [k for k in choices if k != conflict.setting and k not in fixed]
        refused = []
        for free in itertools.product(*(choices[k] for k in others)):
            for value in choices[conflict.setting]:
                chosen = {**fixed, **dict(zip(others, free)), conflict.setting: value}
                own = conflict.violation(chosen)
                assert (own is None) == (value in conflict.accepted), chosen
                if own:
                    refused.append(own)
                    assert variants.rule_violation(**chosen) is not None
        # a floor every release meets (sm_100 and sm_120 from CUDA 12.8, the oldest) refuses nothing today
        assert refused or set(conflict.accepted) == set(choices[conflict.setting])
        assert all(f"setting '{conflict.setting}'" in why and conflict.why.split("{")[0] in why
                               for why in refused)
