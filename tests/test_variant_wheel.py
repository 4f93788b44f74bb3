"""Variant wheels (PEP 825 draft), checked with variantlib and the CPU providers' own validation."""

from __future__ import annotations

import json
import zipfile

import pytest

from backend.variants import Variant, matrix
from backend.wheels.relabel import relabel
from backend.wheels.variant import properties, write_index_variants_json, write_variant_wheel
from conftest import make_wheel
from test_wheels_support import check_record

variantlib = pytest.importorskip("variantlib", reason="pip install -r ci/requirements/wheels.txt")
from variantlib.constants import VALIDATION_WHEEL_NAME_REGEX  # noqa: E402
from variantlib.models.variant import VariantDescription, VariantProperty  # noqa: E402
from variantlib.variant_dist_info import VariantDistInfo  # noqa: E402
from variantlib.variants_json import VariantsJson  # noqa: E402

H100 = Variant(sm="90", isa="avx512bf16", cuda="12.9", python="313")
GH200 = Variant(sm="90", isa="armv9", cuda="12.9", python="313")


def property_strings(variant: Variant) -> list[str]:
    """``namespace :: feature :: value`` lines, sorted."""
    return sorted(f"{ns} :: {feature} :: {value}" for ns, features in properties(variant).items()
                  for feature, values in features.items() for value in values)


def variant_json_of(wheel):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/variant.json"))
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name), archive.read(metadata).decode(), name


def test_properties_of_examples():
    assert property_strings(H100) == [
        "nvidia :: cuda_version_lower_bound :: 12.9",
        "nvidia :: sm_arch :: 90_real",
        "x86_64 :: avx512_bf16 :: on",
        "x86_64 :: level :: v4",
    ]
    assert property_strings(GH200)[:2] == ["aarch64 :: bf16 :: on", "aarch64 :: i8mm :: on"]
    assert "aarch64 :: version :: 9.0a" in property_strings(GH200)
    assert "x86_64 :: level :: v2" in property_strings(Variant(sm="61", isa="avx", cuda="12.8"))


@pytest.mark.parametrize("variant", [H100, GH200], ids=["x86_64", "aarch64"])
def test_variant_wheel_validates_with_variantlib(tmp_path, variant):
    build = tmp_path / "build"
    torch = relabel(make_wheel(build, "torch", "2.9.1", big=500_000), tmp_path / "house", version=f"2.9.1+{variant.label}")
    vllm = relabel(
        make_wheel(build, "vllm", "0.15.1", requires=("torch==2.9.1", "numpy")),
        tmp_path / "house",
        version=f"0.15.1+{variant.label}",
        pins={"torch": f"2.9.1+{variant.label}"},
    )
    out = tmp_path / "variants"
    vtorch = write_variant_wheel(torch, out, variant)
    vvllm = write_variant_wheel(vllm, out, variant)
    assert vtorch.name == f"torch-2.9.1-py3-none-any-{variant.label}.whl"
    match = VALIDATION_WHEEL_NAME_REGEX.fullmatch(vvllm.name)
    assert match and match.group("variant_label") == variant.label and match.group("ver") == "0.15.1"
    check_record(vtorch)
    check_record(vvllm)
    data, metadata, member = variant_json_of(vvllm)
    assert member == "vllm-0.15.1.dist-info/variant.json"
    assert "Version: 0.15.1\n" in metadata and "Requires-Dist: torch==2.9.1\n" in metadata
    info = VariantDistInfo(data, expected_label=variant.label)  # raises on anything malformed
    assert sorted(p.to_str() for p in info.variant_desc.properties) == property_strings(variant)
    assert info.to_str() == data.decode().rstrip("\n")  # written as variantlib writes it
    # variantlib's own index generator agrees with ours.
    from variantlib.commands.main import main as variantlib_main

    variantlib_main(["generate-index-json", "-d", str(out)])
    theirs = json.loads((out / "vllm-0.15.1-variants.json").read_text())
    ours_path = write_index_variants_json(tmp_path / "ours", "vllm-0.15.1", [variant])
    assert ours_path.name == "vllm-0.15.1-variants.json"
    assert json.loads(ours_path.read_text()) == theirs


def test_cpu_properties_valid_for_the_providers():
    """Every x86_64 and aarch64 property of the matrix passes the provider plugin's validation."""
    from provider_variant_aarch64.plugin import AArch64Plugin
    from provider_variant_x86_64.plugin import X8664Plugin

    plugins = {"x86_64": X8664Plugin(), "aarch64": AArch64Plugin()}
    seen = set()
    for variant in matrix(python="313"):
        description = VariantDescription(
            [VariantProperty.from_str(line) for line in property_strings(variant)], label=variant.label
        )
        for prop in description.properties:
            if prop.namespace in plugins:
                assert plugins[prop.namespace].validate_property(prop), prop.to_str()
                seen.add(prop.to_str())
            else:
                assert prop.namespace == "nvidia"
                assert prop.feature in ("sm_arch", "cuda_version_lower_bound")
    assert "x86_64 :: avx512_vnni :: on" in seen and "aarch64 :: version :: 8.2a" in seen


def test_index_json_of_many_variants(tmp_path):
    variants = [v for v in matrix(python="313") if v.sm == "90" and v.cuda == "12.9"]
    variants_x86 = [v for v in variants if v.platform == "x86_64"]
    path = write_index_variants_json(tmp_path, "torch-2.9.1", variants_x86)
    parsed = VariantsJson(json.loads(path.read_text()))
    assert set(parsed.variants) == {v.label for v in variants_x86}
    assert parsed.namespace_priorities == ["nvidia", "x86_64"]
    for v in variants_x86:
        assert sorted(p.to_str() for p in parsed.variants[v.label].properties) == property_strings(v)
    # Without a version it is read from the variant wheels of that name in the folder.
    wheel = relabel(make_wheel(tmp_path / "b", "torch", "2.9.1"), tmp_path / "h", version=f"2.9.1+{H100.label}")
    write_variant_wheel(wheel, tmp_path / "v", H100)
    assert write_index_variants_json(tmp_path / "v", "torch", [H100]).name == "torch-2.9.1-variants.json"


def test_properties_are_sorted_and_hashable():
    assert list(properties(H100)) == ["nvidia", "x86_64"]
    desc = VariantDescription([VariantProperty.from_str(line) for line in property_strings(H100)])
    assert sorted(p.to_str() for p in desc.properties) == property_strings(H100)
