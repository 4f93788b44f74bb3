"""torchvision 0.24.1 against the variant's torch.

FORCE_CUDA=1: there is no GPU at build time, and setup.py otherwise builds
CUDA ops only when torch.cuda.is_available().  BUILD_VERSION replaces the
version (version.txt + git suffix) outright, so the label travels with it.
"""

import os
import shutil

from .base import BuildContext, Features, Marker, Recipe, cpp_extension_arch_problem

# ---- image codecs (issue 22, item 5) ----------------------------------------------------------------
# torchvision 0.24.1's setup.py builds torchvision/image.so with each codec it finds and only warns
# about the rest ("Building torchvision without PNG support", ... JPEG, WEBP, NVJPEG): libpng through
# `libpng-config` on PATH (>= 1.6.0), jpeglib.h and webp/decode.h in TORCHVISION_INCLUDE, the conda
# prefixes, /usr/include or /usr/local/include, nvjpeg.h in CUDA_HOME/include; each is on unless
# TORCHVISION_USE_PNG / _JPEG / _WEBP / _NVJPEG is "0".  PyTorch's release builds get libjpeg-turbo
# and libwebp from conda (packaging/pre_build_script.sh: "conda install libwebp>=1.3.2",
# "conda install libjpeg-turbo -c pytorch"; libpng from conda on aarch64, the build image elsewhere)
# and copy them into the wheel: PyTorch's torchvision 0.29.1 manylinux_2_28_x86_64 wheel carries
# torchvision.libs/libpng16.1d0d8f4e.so.16, libjpeg.67fb65bd.so.8, libwebp.bab959f1.so.7,
# libsharpyuv.64944e6b.so.0 (and libz, libnvjpeg, libcudart), and its image_stable.so has DT_NEEDED
# libpng16.1d0d8f4e.so.16 / libjpeg.67fb65bd.so.8 / libwebp.bab959f1.so.7 with RUNPATH
# $ORIGIN:$ORIGIN/../torchvision.libs (read with readelf from the wheel; docs/REFERENCE_BUILDS.md).
# This recipe does the same with the build host's -dev packages (host_problem refuses a host without them
# before anything compiles) and grafts exactly the codec libraries (GRAFT_LIBRARIES) by auditwheel's repair
# (backend/wheels/manylinux.py: graft): hashed sonames in torchvision.libs, RUNPATH $ORIGIN/../torchvision.libs;
# torch's and CUDA's libraries stay external (the nvidia-* wheels).  A host's libpng16.so.16 left as a
# DT_NEEDED is still refused by the linkage check; image.so without a codec asked for is refused by
# verification.  NVJPEG (TORCHVISION_USE_NVJPEG=1) is built where the toolchain's CUDA_HOME has nvjpeg.h,
# a toolchain library the wheel declares: the pypi toolchain installs nvidia-nvjpeg.
CODEC_SWITCHES = {"TORCHVISION_USE_PNG": "1", "TORCHVISION_USE_JPEG": "1", "TORCHVISION_USE_WEBP": "1",
                  "TORCHVISION_USE_NVJPEG": "1"}
# The codec libraries and what they need themselves (libwebp >= 1.3 links libsharpyuv), never torch/CUDA
GRAFT_LIBRARIES = ("libpng16.so*", "libjpeg.so*", "libturbojpeg.so*", "libwebp.so*", "libsharpyuv.so*")
# The CPU codecs (all on): what setup.py looks for, and the Debian/Ubuntu package that has it
CODEC_HEADERS = {"png": ("libpng-config", "libpng-dev"), "jpeg": ("jpeglib.h", "libjpeg-dev or libjpeg62-turbo-dev"),
                 "webp": ("webp/decode.h", "libwebp-dev")}


def _include_folders() -> list[str]:
    """Where torchvision 0.24.1's setup.py looks for jpeglib.h and webp/decode.h (its get_include_dirs)."""
    folders = [p for p in os.environ.get("TORCHVISION_INCLUDE", "").split(os.pathsep) if p]
    folders += [os.path.join(os.environ[v], "include") for v in ("BUILD_PREFIX", "CONDA_PREFIX") if os.environ.get(v)]
    return folders + ["/usr/include", "/usr/local/include"]


# image.so links (or, statically, carries) each codec setup.py found: read_image / decode_png call libpng,
# decode_jpeg libjpeg, decode_webp libwebp, decode_jpegs_cuda nvjpeg.  Every CPU codec is promised.
FEATURES = Features(
    object="torchvision/image.so",
    markers={
        "png": Marker(libraries=("libpng",), symbols=("png_create_read_struct",)),
        "jpeg": Marker(libraries=("libjpeg", "libturbojpeg"), symbols=("jpeg_CreateDecompress",)),
        "webp": Marker(libraries=("libwebp",), symbols=("WebPGetFeaturesInternal", "WebPDecodeRGB")),
        "nvjpeg": Marker(libraries=("libnvjpeg",), symbols=("nvjpegCreateSimple",)),
    },
    promised=lambda variant: tuple(CODEC_HEADERS),
    hint="setup.py finds libpng through libpng-config and jpeglib.h in TORCHVISION_INCLUDE or /usr/include; "
         "see the torchvision log's 'Building torchvision without' lines",
)

# The smoke check's op (backend/verify/smoke.py), the same text on each device
SMOKE = """
import torch, torchvision
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], device="{device}")
scores = torch.tensor([0.9, 0.8, 0.7], device="{device}")
assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2], "torchvision.ops.nms on {device}"
"""


class Torchvision(Recipe):
    name = "torchvision"
    version = "0.24.1"
    build_requires = ("setuptools>=70.1.0", "wheel")
    features = FEATURES
    # setup.py: NVCC_FLAGS = os.getenv("NVCC_FLAGS", None), shlex-split into extra_compile_args["nvcc"] (read at
    # pytorch/vision 004ebb5c, after 0.24.1; the variable is older than 0.24); C/C++ take CFLAGS (setuptools)
    isa_flag_variables = {"NVCC_FLAGS": "nvcc"}

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        return {"FORCE_CUDA": "1", "BUILD_VERSION": self.local_version(ctx.variant, ctx.tree_version), **CODEC_SWITCHES}

    def variant_problem(self, variant) -> str | None:
        # setup.py builds its CUDA ops with torch's CUDAExtension, whose arch flags come from TORCH_CUDA_ARCH_LIST
        return cpp_extension_arch_problem("torchvision", variant.target.capability)

    def graft_libraries(self, variant) -> tuple[str, ...]:
        return GRAFT_LIBRARIES

    def host_problem(self) -> str | None:
        """The codec -dev packages the build host lacks (setup.py would only warn and build image.so without them)."""
        def present(found: str) -> bool:  # a header in setup.py's include folders, or a program on PATH
            if found.endswith(".h"):
                return any(os.path.isfile(os.path.join(folder, found)) for folder in _include_folders())
            return shutil.which(found) is not None

        missing = [f"{found} ({package})" for found, package in CODEC_HEADERS.values() if not present(found)]
        if not missing:
            return None
        return (f"torchvision's image codecs need on the build host: {', '.join(missing)}; install them "
                "(apt-get install libpng-dev libjpeg-dev libwebp-dev), or leave torchvision out of -C components")

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
    smoke = SMOKE.format(device="cpu")
    smoke_gpu = SMOKE.format(device="cuda")


RECIPE = Torchvision()
