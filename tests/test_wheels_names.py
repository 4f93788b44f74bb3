"""Wheel file names: fields, the PEP 825 draft's variant label, renaming, refusals."""

import pytest
from packaging.version import Version

from backend.errors import BackendError
from backend.wheels import names


def test_plain_name_fields_and_project():
    wheel = names.parse("flashinfer_python-0.6.1+cu129.sm90-cp39-abi3-manylinux_2_28_x86_64.linux_x86_64.whl")
    assert wheel.distribution == "flashinfer_python"
    assert wheel.project == "flashinfer-python"
    assert wheel.version == Version("0.6.1+cu129.sm90")
    assert wheel.version_text == "0.6.1+cu129.sm90"
    assert wheel.build_text is None and wheel.variant_label is None
    assert wheel.platform_tags == ["manylinux_2_28_x86_64", "linux_x86_64"]
    assert names.same_project("Flashinfer.Python-1-py3-none-any.whl", wheel.file_name())


def test_build_tag_and_variant_label_are_told_apart():
    built = names.parse("torch-2.9.1-1abc-cp313-cp313-linux_x86_64.whl")
    assert built.build == (1, "abc") and built.variant_label is None
    labelled = names.parse("torch-2.9.1-cp313-cp313-linux_x86_64-cu129.sm90.avx512.whl")
    assert labelled.variant_label == "cu129.sm90.avx512" and labelled.build == ()
    both = names.parse("torch-2.9.1-2-cp313-cp313-linux_x86_64-cu129.sm90.avx512.whl")
    assert both.build == (2, "") and both.variant_label == "cu129.sm90.avx512"
    assert both.file_name() == "torch-2.9.1-2-cp313-cp313-linux_x86_64-cu129.sm90.avx512.whl"


def test_renamed_changes_only_the_named_fields():
    wheel = names.parse("vllm-0.15.1-cp38-abi3-linux_x86_64.whl")
    assert wheel.renamed(version="0.15.1+cu129.sm90") == "vllm-0.15.1+cu129.sm90-cp38-abi3-linux_x86_64.whl"
    assert wheel.renamed(platform_tags=["manylinux_2_28_x86_64"]) == "vllm-0.15.1-cp38-abi3-manylinux_2_28_x86_64.whl"
    assert wheel.renamed(variant_label="cu129.sm90") == "vllm-0.15.1-cp38-abi3-linux_x86_64-cu129.sm90.whl"


@pytest.mark.parametrize("bad", [
    "torch-2.9.1.tar.gz",
    "torch-2.9.1-cp313-linux_x86_64.whl",
    "torch-not.a.version!-cp313-cp313-linux_x86_64.whl",
    "torch-2.9.1-cp313-cp313-linux_x86_64-Bad-Label.whl",
    "torch-2.9.1-cp313-cp313-linux_x86_64-BAD.whl",
])
def test_refusals_are_one_line_naming_the_file(bad):
    with pytest.raises(BackendError) as error:
        names.parse(bad)
    assert bad in str(error.value) and "\n" not in str(error.value)


def test_guess_for_reports_about_invalid_names():
    assert names.guess_name_and_version("My_Pkg-1.0-broken.whl") == ("my-pkg", "1.0")
    assert names.guess_name_and_version("nodash.whl") == ("nodash", "")
