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
# Nothing in our locks provides them (no PyPI wheel ships libpng/libjpeg headers and static
# libraries), so the codecs come from the host: the recipe asks for every codec explicitly, its first
# command stops the build with one line when libpng-config or jpeglib.h is missing (instead of a
# torchvision that cannot decode images), and verification refuses an image.so without PNG and JPEG.
# WEBP is built when webp/decode.h is there too (upstream's wheels have it) and recorded.  The wheel then links the host's libpng16 / libjpeg / libwebp (DT_NEEDED, not
# grafted): the target machine needs them too (docs/COMPONENTS.md).  NVJPEG: built where the
# toolchain's CUDA_HOME has nvjpeg.h: the pypi toolchain now installs nvidia-nvjpeg (its library table,
# backend/toolchains/pypi.py), an installed toolkit has it; the nix toolchain's torch set leaves it out
# (nix.py EVERY_LIBRARY).  The manifest records which codecs were linked.
CODEC_SWITCHES = {"TORCHVISION_USE_PNG": "1", "TORCHVISION_USE_JPEG": "1", "TORCHVISION_USE_WEBP": "1",
                  "TORCHVISION_USE_NVJPEG": "1"}
# Where setup.py looks on Linux (find_libpng, find_library): the check below mirrors it.
CODEC_CHECK = """
import os, shutil, sys
includes = [p for p in os.environ.get("TORCHVISION_INCLUDE", "").split(os.pathsep) if p]
includes += [os.path.join(os.environ[v], "include") for v in ("BUILD_PREFIX", "CONDA_PREFIX") if os.environ.get(v)]
includes += ["/usr/include", "/usr/local/include"]
missing = [] if shutil.which("libpng-config") else ["libpng-config (libpng >= 1.6)"]
missing += [h for h in ("jpeglib.h",) if not any(os.path.exists(os.path.join(d, h)) for d in includes)]
if missing:
    sys.exit("torchvision: its image codecs are missing on this host: " + ", ".join(missing)
             + "; install libpng-dev and libjpeg-dev (libwebp-dev adds WEBP) or name their include folder in"
             + " TORCHVISION_INCLUDE; without them torchvision cannot decode PNG or JPEG")
"""


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "FORCE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
        **CODEC_SWITCHES,
    }


def commands(ctx: BuildContext) -> list[list[str]]:
    return [[ctx.python, "-c", CODEC_CHECK], pip_wheel(ctx)]


# image.so links (or, statically, carries) each codec setup.py found: read_image / decode_png call libpng,
# decode_jpeg libjpeg, decode_webp libwebp, decode_jpegs_cuda nvjpeg.  PNG and JPEG are what every
# upstream wheel has; WEBP and NVJPEG are recorded.
FEATURES = Features(
    object="torchvision/image.so",
    markers={
        "png": Marker(libraries=("libpng",), symbols=("png_create_read_struct",)),
        "jpeg": Marker(libraries=("libjpeg", "libturbojpeg"), symbols=("jpeg_CreateDecompress",)),
        "webp": Marker(libraries=("libwebp",), symbols=("WebPGetFeaturesInternal", "WebPDecodeRGB")),
        "nvjpeg": Marker(libraries=("libnvjpeg",), symbols=("nvjpegCreateSimple",)),
    },
    promised=lambda variant: ("png", "jpeg"),
    hint="install libpng-dev and libjpeg-dev (setup.py finds libpng through libpng-config and jpeglib.h in "
         "/usr/include) and see the torchvision log's 'Building torchvision without' lines",
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
    commands=commands,
    features=FEATURES,
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=2.0,
    # setup.py: NVCC_FLAGS = os.getenv("NVCC_FLAGS", None), shlex-split into extra_compile_args["nvcc"] (read at
    # pytorch/vision 004ebb5c, after 0.24.1; the variable is older than 0.24); C/C++ take CFLAGS (setuptools)
    isa_flag_variables={"NVCC_FLAGS": "nvcc"},
)
