"""Optional libraries read from real objects built here with gcc (backend/verify/features.py).

The objects stand for the members that show them in the real wheels:
``torch/lib/libtorch_cuda.so`` links a (stub) ``libcudnn.so.9`` as torch does
when CMake found cuDNN, or only calls into NCCL (an undefined symbol);
``torch/lib/libtorch_cpu.so`` either defines the BLAS/LAPACK/MKL entry points
(MKL linked statically, as PyTorch's x86_64 wheels), links a stub
``libopenblas.so.0`` and calls into it (a shared OpenBLAS), or has none (torch's
fallback when no BLAS is found, ``USE_BLAS 0``); ``torch/lib/libtorch_nvshmem.so``
links a stub ``libnvshmem_host.so.3`` (present only when torch found NVSHMEM);
torchvision's ``torchvision/image.so`` links a stub libpng and libjpeg, or
neither (setup.py's "Building torchvision without PNG support").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_wheel

from backend.errors import BackendError
from backend.recipes import get
from backend.variants import Variant
from backend.verify.features import check_features, read_witnesses

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
TORCH = get("torch")
TORCHVISION = get("torchvision")
SM90 = Variant(sm="90", isa="avx512", cuda="13.0")
SM90_ARM = Variant(sm="90", isa="armv9", cuda="13.0")
STATIC_MKL = ("void sgemm_(void) {}\nvoid dgemm_(void) {}\nvoid dgetrf_(void) {}\nvoid sgesdd_(void) {}\n"
              "void mkl_get_version_string(char *b, int n) { if (n) b[0] = 0; }\n")


def read_features(wheel, spec) -> dict[str, bool] | None:
    """{feature: enabled} for the wheel, or None when the wheel holds none of ``spec``'s objects."""
    witnesses = read_witnesses(wheel, spec)
    return None if witnesses is None else {feature: bool(w) for feature, w in witnesses.items()}


def _so(tmp: Path, name: str, source: str, *link: str) -> Path:
    (tmp / f"{name}.c").write_text(source)
    out = tmp / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(tmp / f"{name}.c"), *link], check=True)
    return out


def _wheel(tmp: Path, name: str, members: dict[str, Path], requires=(), project: str = "torch") -> Path:
    folder = tmp / name
    folder.mkdir()
    files = {f"{project}/__init__.py": b"", **members}
    return make_wheel(folder, project, "2.9.1", files, requires=requires, tag="cp311-cp311-linux_x86_64")


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("objects")
    stub = tmp / "stub"
    stub.mkdir()
    _so(stub, "libcudnn", "int cudnnCreate(void **h) { return 0; }", "-Wl,-soname,libcudnn.so.9")
    _so(stub, "libopenblas", "void sgemm_(void) {}\nvoid dgetrf_(void) {}\nchar *openblas_get_config(void) { return 0; }",
        "-Wl,-soname,libopenblas.so.0")
    _so(stub, "libnvshmem_host", "int nvshmem_init(void) { return 0; }", "-Wl,-soname,libnvshmem_host.so.3")
    _so(stub, "libpng16", "void *png_create_read_struct(void) { return 0; }", "-Wl,-soname,libpng16.so.16")
    _so(stub, "libjpeg", "void jpeg_CreateDecompress(void) {}", "-Wl,-soname,libjpeg.so.8")
    _so(stub, "libwebp", "int WebPGetFeaturesInternal(void) { return 0; }", "-Wl,-soname,libwebp.so.7")
    linked = [f"-L{stub}", "-Wl,--no-as-needed"]
    return {
        "cuda": _so(tmp, "cuda", "int cudnnCreate(void **);\nint ncclCommInitRank(void *);\n"
                    "int use(void) { return cudnnCreate(0) + ncclCommInitRank(0); }", *linked, "-lcudnn"),
        "nccl": _so(tmp, "nccl", "int ncclCommInitRank(void *) __attribute__((weak));\n"
                    "int use(void) { return ncclCommInitRank ? ncclCommInitRank(0) : 1; }"),
        "bare": _so(tmp, "bare", "int use(void) { return 1; }"),
        "cpu_static_mkl": _so(tmp, "cpu_static_mkl", STATIC_MKL),
        "cpu_openblas": _so(tmp, "cpu_openblas", "void sgemm_(void);\nvoid dgetrf_(void);\nchar *openblas_get_config(void);\n"
                            "void use(void) { sgemm_(); dgetrf_(); openblas_get_config(); }", *linked, "-lopenblas"),
        "cpu_no_blas": _so(tmp, "cpu_no_blas", "int use(void) { return 1; }"),
        # static MKL linked with hidden visibility: the symbols are only in the full table (.symtab)
        "cpu_hidden_mkl": _so(tmp, "cpu_hidden_mkl", "#pragma GCC visibility push(hidden)\n" + STATIC_MKL),
        "nvshmem": _so(tmp, "nvshmem", "int nvshmem_init(void);\nint use(void) { return nvshmem_init(); }",
                       *linked, "-lnvshmem_host"),
        "image": _so(tmp, "image", "void *png_create_read_struct(void);\nvoid jpeg_CreateDecompress(void);\n"
                     "int WebPGetFeaturesInternal(void);\n"
                     "void use(void) { png_create_read_struct(); jpeg_CreateDecompress(); WebPGetFeaturesInternal(); }",
                     *linked, "-lpng16", "-ljpeg", "-lwebp"),
        "image_no_webp": _so(tmp, "image_no_webp", "void *png_create_read_struct(void);\nvoid jpeg_CreateDecompress(void);\n"
                             "void use(void) { png_create_read_struct(); jpeg_CreateDecompress(); }",
                             *linked, "-lpng16", "-ljpeg"),
        "image_bare": _so(tmp, "image_bare", "int decode(void) { return 0; }"),
    }


def _torch(tmp: Path, name: str, objects, cuda="cuda", cpu="cpu_static_mkl", nvshmem=True, requires=()) -> Path:
    members = {"torch/lib/libtorch_cuda.so": objects[cuda], "torch/lib/libtorch_cpu.so": objects[cpu]}
    if nvshmem:
        members["torch/lib/libtorch_nvshmem.so"] = objects["nvshmem"]
    return _wheel(tmp, name, members, requires)


def test_features_are_read_from_links_calls_and_static_symbols(objects, tmp_path):
    full = read_features(_torch(tmp_path, "full", objects), TORCH.features)
    assert full == {"blas": True, "cudnn": True, "cudss": False, "cusparselt": False, "lapack": True, "mkl": True,
                    "nccl": True, "nvshmem": True, "openblas": False}
    assert read_features(_torch(tmp_path, "nccl", objects, cuda="nccl"), TORCH.features)["nccl"] is True
    bare = read_features(_torch(tmp_path, "bare", objects, cuda="bare", cpu="cpu_no_blas", nvshmem=False), TORCH.features)
    assert not any(bare.values())
    assert read_features(_wheel(tmp_path, "python-only", {}), TORCH.features) is None


def test_the_witnesses_name_the_provider_and_the_pin(objects, tmp_path):
    """What the manifest records under links: static MKL, a shared OpenBLAS, NVSHMEM with the wheel it pins."""
    static = read_witnesses(_torch(tmp_path, "static", objects, requires=["nvidia-nvshmem-cu13==3.3.24"]), TORCH.features)
    assert static["blas"] == "static: defines sgemm_" and static["lapack"] == "static: defines dgetrf_"
    assert static["mkl"] == "static: defines mkl_get_version_string" and static["openblas"] == ""
    assert static["nvshmem"] == "libnvshmem_host.so.3 (nvidia-nvshmem-cu13==3.3.24)"
    shared = read_witnesses(_torch(tmp_path, "shared", objects, cpu="cpu_openblas"), TORCH.features)
    assert shared["blas"] == "calls sgemm_" and shared["lapack"] == "calls dgetrf_"
    assert shared["openblas"] == "libopenblas.so.0" and shared["mkl"] == ""


def test_a_static_blas_hidden_from_the_dynamic_table_still_counts(objects, tmp_path):
    hidden = read_witnesses(_torch(tmp_path, "hidden", objects, cpu="cpu_hidden_mkl"), TORCH.features)
    assert hidden["blas"] == "static: defines sgemm_" and hidden["mkl"] == "static: defines mkl_get_version_string"


def test_a_torch_without_blas_and_lapack_is_refused(objects, tmp_path, capsys):
    """USE_BLAS 0 (MKL not found, no other BLAS): torch builds, and verification refuses it from the binary."""
    links: dict[str, dict[str, str]] = {}
    good = _torch(tmp_path, "good", objects)
    assert check_features(TORCH, SM90, [good], "strict", links=links)[good.name]["blas"] is True
    assert links[good.name]["lapack"] == "static: defines dgetrf_"
    no_blas = _torch(tmp_path, "no-blas", objects, cpu="cpu_no_blas")
    with pytest.raises(BackendError) as error:
        check_features(TORCH, SM90, [no_blas], "strict")
    text = str(error.value)
    assert "\n" not in text and "built without blas, lapack, mkl, which the variant" in text
    assert "torch/lib/libtorch_cpu.so" in text
    # aarch64 promises OpenBLAS, not MKL: the shared OpenBLAS passes there and is refused on x86_64
    openblas = _torch(tmp_path, "openblas", objects, cpu="cpu_openblas")
    assert check_features(TORCH, SM90_ARM, [openblas], "strict")
    with pytest.raises(BackendError, match="built without mkl,"):
        check_features(TORCH, SM90, [openblas], "strict")


def test_a_torch_without_nvshmem_is_refused_except_on_sm61(objects, tmp_path, capsys):
    without = _torch(tmp_path, "no-nvshmem", objects, nvshmem=False)
    with pytest.raises(BackendError, match="built without nvshmem, .*libtorch_nvshmem.so"):
        check_features(TORCH, SM90, [without], "strict")
    sm61 = Variant(sm="61", isa="avx2", cuda="12.9")  # NVSHMEM 3 has no sm_61 code, nor cuDNN 9.11+
    assert check_features(TORCH, sm61, [_torch(tmp_path, "sm61", objects, cuda="nccl", nvshmem=False)], "strict")


def test_warn_and_off(objects, tmp_path, capsys):
    bare = _torch(tmp_path, "bare", objects, cuda="bare", cpu="cpu_no_blas", nvshmem=False)
    assert check_features(TORCH, SM90, [bare], "warn")[bare.name]["nccl"] is False
    assert "built without cudnn, nccl, blas, lapack, mkl, nvshmem" in capsys.readouterr().out
    assert check_features(TORCH, SM90, [bare], "off") == {}


def test_a_torchvision_without_the_codecs_it_was_asked_for_is_refused(objects, tmp_path):
    """torchvision's setup.py only warns without libpng / jpeglib.h / webp/decode.h: image.so then lacks them.
    The recipe asks for PNG, JPEG and WEBP: an image.so with all three passes, one without any or without
    WEBP alone is refused, read from its DT_NEEDED and symbols."""
    assert TORCHVISION.features.promised(SM90) == ("png", "jpeg", "webp")
    good = _wheel(tmp_path, "tv-good", {"torchvision/image.so": objects["image"]}, project="torchvision")
    recorded = check_features(TORCHVISION, SM90, [good], "strict")[good.name]
    assert recorded == {"jpeg": True, "nvjpeg": False, "png": True, "webp": True}
    bare = _wheel(tmp_path, "tv-bare", {"torchvision/image.so": objects["image_bare"]}, project="torchvision")
    with pytest.raises(BackendError, match="built without png, jpeg, webp, which the variant"):
        check_features(TORCHVISION, SM90, [bare], "strict")
    no_webp = _wheel(tmp_path, "tv-no-webp", {"torchvision/image.so": objects["image_no_webp"]}, project="torchvision")
    with pytest.raises(BackendError, match="built without webp, which the variant"):
        check_features(TORCHVISION, SM90, [no_webp], "strict")
    assert check_features(TORCHVISION, SM90, [bare], "off") == {}