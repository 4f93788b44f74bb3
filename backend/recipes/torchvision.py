"""torchvision 0.24.1 against the variant's torch.

FORCE_CUDA=1: there is no GPU at build time, and setup.py otherwise builds
CUDA ops only when torch.cuda.is_available().  BUILD_VERSION replaces the
version (version.txt + git suffix) outright, so the label travels with it.
"""

from .base import BuildContext, Features, Marker, Recipe, pip_wheel

VERSION = "0.24.1"

# ---- image codecs (issue 22, item 5) ----------------------------------------------------------------
# torchvision 0.24.1's setup.py builds torchvision/image.so with each codec it finds and only warns
# about the rest ("Building torchvision without PNG support", ... JPEG, WEBP, NVJPEG): libpng through
# `libpng-config` on PATH (>= 1.6.0), jpeglib.h and webp/decode.h in TORCHVISION_INCLUDE, the conda
# prefixes, /usr/include or /usr/local/include, nvjpeg.h in CUDA_HOME/include; each is on unless
# TORCHVISION_USE_PNG / _JPEG / _WEBP / _NVJPEG is "0".  PyTorch's release builds get libjpeg-turbo
# and libwebp from conda (packaging/pre_build_script.sh: "conda install libwebp>=1.3.2",
# "conda install libjpeg-turbo -c pytorch"; libpng from conda on aarch64, the build image elsewhere)
# and copy them into the wheel (packaging/post_build_script.sh -> packaging/wheel/relocate.py).
# The wheels this project builds carry no library a fresh host may lack: verification refuses a DT_NEEDED
# that no file of the wheel, wheel of the wheelhouse, declared requirement, toolchain or manylinux
# system library provides (verify/linkage.py), and nothing is grafted.  A host's libpng16 / libjpeg /
# libwebp are none of those (the torchvision stand-in linking them is refused so in tests/test_pipeline),
# Debian's static libpng16.a is not -fPIC (it cannot go into image.so), no PyPI wheel ships these
# libraries with their headers, and neither lock has their sources yet.  Refusing torchvision outright
# would refuse the stack (vLLM requires torchvision).  So the recipe builds torchvision *without* its
# CPU codecs on purpose, explicitly (TORCHVISION_USE_PNG/_JPEG/_WEBP=0, so the result does not depend on
# which -dev packages the host has), says so in the plan, and the manifest records image.so's codecs;
# NVJPEG (TORCHVISION_USE_NVJPEG=1) is built where the toolchain's CUDA_HOME has nvjpeg.h, a toolchain
# library the wheel declares: the pypi toolchain installs nvidia-nvjpeg (backend/toolchains/pypi.py), an
# installed toolkit has it, the nix toolchain's set leaves it out.  Verification refuses an image.so
# without a codec the recipe asks for (CODEC_SWITCHES "1"); what stays to do is building libpng and
# libjpeg-turbo -fPIC from locked sources (docs/COMPONENTS.md).
CODEC_SWITCHES = {"TORCHVISION_USE_PNG": "0", "TORCHVISION_USE_JPEG": "0", "TORCHVISION_USE_WEBP": "0",
                  "TORCHVISION_USE_NVJPEG": "1"}
CPU_CODECS = {"png": "TORCHVISION_USE_PNG", "jpeg": "TORCHVISION_USE_JPEG", "webp": "TORCHVISION_USE_WEBP"}


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "FORCE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
        **CODEC_SWITCHES,
    }


def notes(variant) -> list[str]:
    off = [codec.upper() for codec, switch in CPU_CODECS.items() if CODEC_SWITCHES[switch] == "0"]
    if not off:
        return []
    return [f"torchvision is built without its {'/'.join(off)} decoders (torchvision.io.decode_png / decode_jpeg "
            "on CPU raise): no portable libpng/libjpeg is supplied yet; JPEG decoding on the GPU (NVJPEG) is "
            "built where the toolchain has nvjpeg"]


def promised_codecs(variant) -> tuple[str, ...]:
    """The CPU codecs the recipe asks setup.py for: image.so must carry each (verification)."""
    return tuple(codec for codec, switch in CPU_CODECS.items() if CODEC_SWITCHES[switch] == "1")


# image.so links (or, statically, carries) each codec setup.py found: read_image / decode_png call libpng,
# decode_jpeg libjpeg, decode_webp libwebp, decode_jpegs_cuda nvjpeg.
FEATURES = Features(
    object="torchvision/image.so",
    markers={
        "png": Marker(libraries=("libpng",), symbols=("png_create_read_struct",)),
        "jpeg": Marker(libraries=("libjpeg", "libturbojpeg"), symbols=("jpeg_CreateDecompress",)),
        "webp": Marker(libraries=("libwebp",), symbols=("WebPGetFeaturesInternal", "WebPDecodeRGB")),
        "nvjpeg": Marker(libraries=("libnvjpeg",), symbols=("nvjpegCreateSimple",)),
    },
    promised=promised_codecs,
    hint="setup.py finds libpng through libpng-config and jpeglib.h in TORCHVISION_INCLUDE or /usr/include; "
         "see the torchvision log's 'Building torchvision without' lines",
)


# What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
SMOKE = """
import torch, torchvision
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2], "torchvision.ops.nms"
"""
SMOKE_GPU = """
import torch, torchvision
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], device="cuda")
scores = torch.tensor([0.9, 0.8, 0.7], device="cuda")
assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2], "torchvision.ops.nms on CUDA"
"""


RECIPE = Recipe(
    version_file="version.txt",
    name="torchvision",
    version=VERSION,
    distributions=("torchvision",),
    build_requires=("setuptools>=70.1.0", "wheel"),
    mem_per_job_gb=2.0,
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=notes,
    features=FEATURES,
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=2.0,
    # setup.py: NVCC_FLAGS = os.getenv("NVCC_FLAGS", None), shlex-split into extra_compile_args["nvcc"] (read at
    # pytorch/vision 004ebb5c, after 0.24.1; the variable is older than 0.24); C/C++ take CFLAGS (setuptools)
    isa_flag_variables={"NVCC_FLAGS": "nvcc"},
)
