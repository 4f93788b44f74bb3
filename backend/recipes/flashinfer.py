"""flashinfer 0.6.1: flashinfer-python (JIT at run time) and flashinfer-jit-cache (AOT kernels for the arch).

FLASHINFER_CUDA_ARCH_LIST is space-separated ``major.minor[a|f]``
(flashinfer/compilation_context.py at v0.6.1).  The values follow
flashinfer's own release scripts at v0.6.1
(scripts/task_test_jit_cache_package_build_import.sh,
.github/workflows/release.yml): Hopper/Blackwell get the arch-specific
``a`` target, 12.0 gets ``12.0f`` from CUDA 12.9 on and ``12.0a`` on 12.8.

SM103 gets ``10.3a`` alone, not the ``10.0a 10.3a`` pair of upstream's
multi-arch release wheel (.github/workflows/release.yml:185 at v0.6.1): a
single-SM wheel must hold only code that loads on sm_103.  With ``10.0a`` in
the list every ordinary module also carries sm_100a cubins
(compilation_context.py:65-68 emits one -gencode per listed arch), and the
modules ``aot.py`` adds when ``compute_100`` is targeted (aot.py:326-362,
480-496, 525-528; detect_sm_capabilities, aot.py:745-756) include sm_100a-only ones
(fp4 quantization: jit/fp4_quantization.py:63-64 with
jit/core.py:129 ``sm100a_nvcc_flags``), which does not load on sm_103.
``10.3a`` turns those off in upstream's own selection; they compile at
first use (JIT) on the user's GPU, and the plan names them.

flashinfer-jit-cache is built from the tree's ``flashinfer-jit-cache/``
folder, which the GitHub tag has and the PyPI sdist does not (checked: the
0.6.1 sdist has no flashinfer-jit-cache/ and no version.txt, but complete
csrc/, include/ and 3rdparty/, which the tag archive lacks).  The lock's
``flashinfer-tag`` entry supplies those two pieces: the first command copies
them into the sdist tree.  ``-C flashinfer-aot=false`` builds flashinfer-python alone.

``-C flashinfer-aot-config`` narrows the AOT module set: JSON (inline or a
file) with the keys of v0.6.1 ``aot.py``'s ``get_default_config()``, the rest
keeping flashinfer's defaults.  Upstream's jit-cache build backend always
passes ``config=None`` (the full set: 695 modules for 9.0a, counted on the
H200), so ``patches/flashinfer/flashinfer-tag/0001-aot-config-from-env.patch``
makes it read ``FLASHINFER_AOT_CONFIG``, which the recipe sets.  One key is
this project's: ``modules``, the JIT spec names to keep of that selection, and
another, ``drop``, shell patterns of spec names to leave out of it.  A module
left out compiles at first use (JIT), as without flashinfer-jit-cache.

The default (``vllm``) is the set vLLM 0.15.1 calls for the variant
(``vllm_aot_config``, derived from vLLM's source, docs/COMPONENTS.md);
``all`` is flashinfer's whole list (695 modules for 9.0a).
"""

import json
import os
from pathlib import Path

from ..errors import SettingError
from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.6.1"
# What aot.py v0.6.1 adds only when compute_100 is targeted (aot.py:326-362 attention, 480-496 MoE/GEMM,
# 525-528 comm; XQA, aot.py:378-379, needs sm90/sm100/sm120/sm121 in the list): left out of an sm103
# jit-cache, compiled at first use.
SM100_ONLY_MODULES = (
    "fmha_cutlass_sm100a (CUTLASS FMHA)", "fmha_gen (trtllm-gen FMHA)", "the SM100 MLA module",
    "fp4_quantization_100, cutlass_fused_moe_sm100, the SM100 GEMMs (CUTLASS fp4/fp8, TGV, trtllm-gen, "
    "low-latency), mxfp8 quantization, trtllm-gen fused MoE (add_moe)",
    "trtllm_comm, trtllm_mnnvl_comm, moe_alltoall (add_comm)", "XQA (add_xqa)",
)
JIT_CACHE_DIR = "flashinfer-jit-cache"
TAG = "flashinfer-tag"  # lock entry: the v0.6.1 tag tree (packaging folder and version.txt only)
CUBIN = "flashinfer-cubin"  # lock entry: upstream's wheel of the trtllm-gen / DeepGEMM cubins
CUBIN_DIR = "flashinfer_cubin/cubins"  # inside that wheel (flashinfer-cubin/flashinfer_cubin/__init__.py:21)
# The artifact-server folders whose checksums.txt and flashinferMetaInfo.h the SM100 AOT modules read at
# build time through get_cubin() (jit/attention/modules.py:1763-1796 trtllm-gen FMHA, jit/fused_moe.py:214-263
# trtllm-gen MoE, jit/gemm/core.py:405-434 and 556-570 trtllm-gen GEMM; paths: artifacts.py:90-96).
CUBIN_HEADERS = {
    "75d477a640f268ea9ad117cc596eb39245713b9e/fmha/trtllm-gen": "flashInferMetaInfo.h",
    "ccae3ed120a12a2c6922b458086b460413dbf731/batched_gemm-0d275a2-9936841": "flashinferMetaInfo.h",
    "1fddc48b7b48af33914d040051b3e2ee9ba4701e/gemm-145d1b1-9b113e3": "flashinferMetaInfo.h",
}
# The flashinfer releases the vLLM release lines pin (docs/RELEASES.md), each with what differs for this recipe,
# read at each tag in a mirror of flashinfer-ai/flashinfer: the artifact folders (flashinfer/artifacts.py:90-95
# ArtifactPath; the header names, artifacts.py:161-175, are the same in both).  The rest was compared and is the same:
# flashinfer-jit-cache/ (git diff v0.5.3 v0.6.1 -- flashinfer-jit-cache/ is empty), compilation_context.py (no
# diff: FLASHINFER_CUDA_ARCH_LIST), aot.py get_default_config()'s keys (aot.py:707-723 at v0.5.3), jit/env.py's
# FLASHINFER_CUBIN_DIR, the cubin wheel's flashinfer_cubin/cubins; v0.5.3's pyproject.toml [build-system] asks
# apache-tvm-ffi>=0.1,<0.2, which the 0.6.1 range below lies within.
RELEASES = {
    "0.6.1": CUBIN_HEADERS,
    "0.5.3": {
        "1e49deb33ec20018ae0acf1d956a579578069da1/fmha/trtllm-gen": "flashInferMetaInfo.h",
        "c108f5cc46420e11805467898186533fb48d6a6f/batched_gemm-0d28130-7b26988": "flashinferMetaInfo.h",
        "1fddc48b7b48af33914d040051b3e2ee9ba4701e/gemm-145d1b1-9b113e3": "flashinferMetaInfo.h",
    },
}


def arch_list(variant) -> str:
    """FLASHINFER_CUDA_ARCH_LIST: the target's arch-specific spelling from Hopper on (9.0a, 10.0a, 10.3a; GB10's
    12.1a turns on aot.py's sm121 modules, detect_sm_capabilities: compute_121 from CUDA 12.9, the variant's
    floor), but for 12.0 its family spelling (12.0f, CUDA 12.9 on; 12.0a before), as upstream's release list."""
    target = variant.target
    if target.sm == "120" and target.family:
        return target.family
    return target.arch_specific or target.capability


def uses_cubins(variant) -> bool:
    """Blackwell (SM100/SM103): flashinfer's trtllm-gen and DeepGEMM kernels load cubins at run time.

    The cubins are sm100a/sm100f/sm103a only (flashinfer-cubin 0.6.1: 198 Sm100a, 3,286 Sm100f, 670 Sm103a
    FMHA kernels; the GEMMs sm100f); other SMs never load them.
    """
    return variant.sm in ("100", "103")


def builds_jit_cache(variant, settings=None) -> bool:
    # flashinfer's releases start at 7.5; its kernels are not written for Pascal.
    return variant.sm != "61" and (settings is None or settings.flashinfer_aot)


OVERLAY = (
    "import shutil, sys; from pathlib import Path\n"
    "tag, tree = Path(sys.argv[1]), Path(sys.argv[2])\n"
    "if not (tree / 'flashinfer-jit-cache').is_dir():\n"
    "    shutil.copytree(tag / 'flashinfer-jit-cache', tree / 'flashinfer-jit-cache')\n"
    "if not (tree / 'version.txt').is_file():\n"
    "    shutil.copy2(tag / 'version.txt', tree / 'version.txt')\n"
)


# flashinfer/aot.py get_default_config() at v0.6.1: its keys, and what each takes.
AOT_HEAD_DIMS = ("fa2_head_dim", "fa3_head_dim")
AOT_DTYPES = {"f16_dtype": ("float16", "bfloat16"), "f8_dtype": ("float8_e4m3fn", "float8_e5m2")}
AOT_BOOL_LISTS = ("use_sliding_window", "use_logits_soft_cap")
AOT_SWITCHES = ("add_comm", "add_gemma", "add_oai_oss", "add_moe", "add_act", "add_misc", "add_xqa")
# vllm-stack's own key, read by the tag patch: keep only these JIT spec names of upstream's selection
# ("fmha_gen": the trtllm-gen FMHA launcher, jit/attention/modules.py:1785, which no upstream key singles out)
AOT_MODULES = "modules"
AOT_DROP = "drop"  # vllm-stack's own key too: shell patterns (fnmatch) of spec names to leave out
AOT_KEYS = AOT_HEAD_DIMS + tuple(AOT_DTYPES) + AOT_BOOL_LISTS + AOT_SWITCHES + (AOT_MODULES, AOT_DROP)


def _head_dim_pairs(item: list) -> bool:
    return all(isinstance(p, list) and len(p) == 2 and all(type(d) is int and d > 0 for d in p) for p in item)


# What a list-valued key takes: (whether its list is good, what the one-line error says it accepts)
AOT_VALUES = {
    **dict.fromkeys(AOT_HEAD_DIMS, (_head_dim_pairs, "a list of [qk, vo] head-dim pairs, e.g. [[128, 128]]")),
    **{name: (lambda item, allowed=allowed: all(d in allowed for d in item), f"a list of {', '.join(allowed)}")
       for name, allowed in AOT_DTYPES.items()},
    AOT_MODULES: (lambda item: item and all(isinstance(n, str) and n for n in item),
                  'a non-empty list of module names, e.g. ["fmha_gen"]'),
    AOT_DROP: (lambda item: all(isinstance(n, str) and n for n in item),
               'a list of module-name patterns, e.g. ["single_decode_*"]'),
    **dict.fromkeys(AOT_BOOL_LISTS, (lambda item: item and all(type(b) is bool for b in item),
                                     "a non-empty list of true/false")),
}
AOT_ALL = "all"  # the setting's value for flashinfer's whole list (upstream's config=None)
AOT_VLLM = "vllm"  # the default: what vLLM 0.15.1 calls (vllm_aot_config)

# What vLLM 0.15.1 calls of flashinfer, read in the 0.14.1 and 0.16.0 sdists that bracket it (0.15.1 has none;
# the lines are the same in both unless two are given as 0.14.1/0.16.0):
# - attention backend (v1/attention/backends/flashinfer.py): head sizes 64, 128, 256 (get_supported_head_sizes,
#   :348-350/:349-351); dtypes float16, bfloat16 (supported_dtypes :281); KV cache auto, bfloat16, fp8, fp8_e4m3,
#   fp8_e5m2 (:282-288, e5m2 only in 0.16.0's list, fp8 in both) -> f8_dtype e4m3 and e5m2; window_left and
#   logits_soft_cap reach every plan() (:965-968/:1010-1013 and the prefill/decode plans after) -> both values
#   of use_sliding_window and use_logits_soft_cap (Mistral's window, Gemma 2's soft cap; upstream's add_gemma,
#   head dim 256 with both, is then already in the set).  Prefill: BatchPrefillWithPagedKVCacheWrapper
#   (:674/:718; ragged for DCP :177) with backend "auto", FA3 on sm90 (flashinfer utils.py
#   determine_attention_backend).  Decode: BatchDecodeWithPagedKVCacheWrapper(use_tensor_cores=True)
#   (:695-705/:739-749), which runs flashinfer's *prefill* module (decode.py:518), so no batch_decode module.
#   Cascade: MultiLevelCascadeAttentionWrapper (:718/:762): prefill modules plus "cascade" (merge_state).
#   The query is fp8 only where TRTLLM attention runs (:579/:594), which is SM100 only
#   (utils/flashinfer.py supports_trtllm_attention:277-290, is_device_capability_family(100)) and is trtllm-gen
#   (fmha_gen, cubins), not XQA -> add_xqa off and no fp8-query prefill module; sinks need TRTLLM too
#   (flashinfer.py:360-361/:361-362) -> add_oai_oss off.
# - MLA (model_executor/layers/attention/mla_attention.py:1155-1189 in 0.16.0): flashinfer's MLA prefill
#   (ragged, head dim 192/128) and trtllm-gen MLA decode only on the SM100 family -> fa2 (192, 128) there;
#   BatchMLAPagedAttentionWrapper is called nowhere -> no batch_mla module.
# - sampling (v1/sample/ops/topk_topp_sampler.py:366-377): "sampling"; rope
#   (model_executor/layers/rotary_embedding/common.py:89): "rope"; allreduce fusion
#   (compilation/collective_fusion.py:540 / compilation/passes/fusion/allreduce_rms_fusion.py:137,
#   trtllm_allreduce_fusion), all2all (flashinfer.comm.trtllm_alltoall, MnnvlMoe) -> add_comm; MoE and
#   quantization (utils/flashinfer.py:108-135, 557-626: cutlass_fused_moe, trtllm MoE, fp4/mxfp8 quantize,
#   mm_fp4, bmm_fp8, fp8_blockscale_gemm_sm90) -> add_moe.
# - never imported by either: flashinfer.activation (add_act), page, quantization (packbits), topk, the
#   Mamba and GDN kernels (vLLM has its own), single prefill/decode, BatchAttention, the vllm_comm custom
#   allreduce and flashinfer's nvshmem module (vLLM's nvshmem is pplx_kernels').
#   norm stays: vLLM does not call it, but this project's smoke check does (SMOKE_GPU, flashinfer.norm.rmsnorm).
VLLM_NEVER_CALLS = (
    "single_prefill_with_kv_cache_*", "single_decode_with_kv_cache_*", "batch_decode_with_kv_cache_*",
    "batch_attention_*", "batch_mla_*", "batch_prefill_with_kv_cache_dtype_q_e4m3_*",
    "batch_prefill_with_kv_cache_dtype_q_e5m2_*", "page", "quantization", "topk", "mamba_*",
    "gdn_prefill*", "vllm_comm", "nvshmem",
)
VLLM_HEAD_DIMS = [[64, 64], [128, 128], [256, 256]]
VLLM_MLA_PREFILL_HEAD_DIM = [192, 128]  # DeepSeek's qk 192 / vo 128, SM100 family only


def vllm_aot_config(variant) -> str:
    """The AOT set vLLM 0.15.1 calls on this variant, as canonical FLASHINFER_AOT_CONFIG JSON (see above)."""
    fa2 = VLLM_HEAD_DIMS + ([VLLM_MLA_PREFILL_HEAD_DIM] if variant.sm in ("100", "103") else [])
    config = {
        "fa2_head_dim": fa2, "fa3_head_dim": VLLM_HEAD_DIMS, "f16_dtype": ["float16", "bfloat16"],
        "f8_dtype": ["float8_e4m3fn", "float8_e5m2"], "use_sliding_window": [False, True],
        "use_logits_soft_cap": [False, True], "add_comm": True, "add_gemma": False, "add_oai_oss": False,
        "add_moe": True, "add_act": False, "add_misc": True, "add_xqa": False, AOT_DROP: list(VLLM_NEVER_CALLS),
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


# vLLM call paths that still compile at first use with the default set, and why (docs/COMPONENTS.md)
VLLM_STILL_JIT = (
    "trtllm_allreduce_fusion (vLLM's allreduce+RMSNorm fusion pass) below SM100: upstream's aot.py builds "
    "trtllm_comm only for compute_100 (aot.py:520-526)",
    "the FlashInfer attention backend at a head size other than 64/128/256 (vLLM refuses those) and MLA "
    "models' FlashInfer prefill outside the SM100 family (vLLM does not select it there)",
    "MoE and GEMM kernels upstream's aot.py lists for no SM of the variant (e.g. fused_moe on sm_80/86/89/120 "
    "below what aot.py adds; CuTe-DSL kernels, which compile through their own JIT, never ninja)",
)


def aot_config(key: str, value, base: Path) -> str | None:
    """``-C flashinfer-aot-config``: inline JSON or a JSON file, checked, as canonical JSON (None: the full set)."""
    text = str(value).strip()
    if text.lower() == AOT_ALL:
        return AOT_ALL
    if text.lower() in ("", AOT_VLLM, "default"):
        return None  # vLLM's set for the variant (vllm_aot_config), chosen when the variant is known
    if not text.startswith(("{", "[")):  # inline JSON; anything else names a file
        # an absolute path stands alone (pathlib drops base); os.path leaves an unknown ~user as written, where
        # Path.expanduser raises
        path = base / os.path.expanduser(text)
        try:
            text = path.read_text()
        except (OSError, ValueError) as error:  # ValueError: a NUL in the path, or a file that is not UTF-8
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise SettingError(key, str(value).replace("\0", "\\0"), "vllm, all, inline JSON ({...}), or a JSON file",
                               why=f"cannot read it: {why}") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SettingError(key, str(value)[:60], "a JSON object", why=f"not JSON: {str(error)[:80] or 'nested too deep'}") from None
    if not isinstance(config, dict):
        raise SettingError(key, str(value), "a JSON object with keys of flashinfer's aot.py get_default_config()")
    for name, item in config.items():
        if name not in AOT_KEYS:
            raise SettingError(key, name, AOT_KEYS, why="not a key of flashinfer 0.6.1's aot.py config (nor modules)")
        good, accepted = AOT_VALUES.get(name, (None, "true or false"))  # a switch (AOT_SWITCHES) takes a bool
        if not (isinstance(item, list) and good(item) if good else type(item) is bool):
            raise SettingError(key, f"{name}={json.dumps(item)}", accepted)
    if not config.get("f16_dtype", True):
        raise SettingError(key, "f16_dtype=[]", "at least one of float16, bfloat16")
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


# Before anything compiles: the headers and checksums the AOT modules read must be in the lock's wheel.
CHECK_CUBINS = (
    "import sys; from pathlib import Path\n"
    "root = Path(sys.argv[1])\n"
    "missing = [f for d, h in zip(sys.argv[2::2], sys.argv[3::2]) for f in (d + '/checksums.txt', d + '/include/' + h)\n"
    "           if not (root / f).is_file()]\n"
    "if missing:\n"
    "    sys.exit(f'flashinfer-cubin: {root} lacks {missing[0]}' + (f' and {len(missing) - 1} more' if missing[1:] else '')\n"
    "             + ': the SM100 AOT modules read it at build time, else from the artifact server')\n"
)


class Flashinfer(Recipe):
    name = "flashinfer"
    version = VERSION  # the 0.6.1 line; for_line gives the one a vLLM release line pins
    distributions = ("flashinfer-python", "flashinfer-jit-cache")
    build_requires = (
        # pyproject.toml [build-system] at v0.6.1
        "setuptools>=77", "packaging>=24", "apache-tvm-ffi>=0.1.6,!=0.1.8,!=0.1.8.post0,<0.2",
        # flashinfer-jit-cache/pyproject.toml [build-system] at v0.6.1 (besides torch)
        "wheel", "ninja", "requests", "numpy", "nvidia-ml-py",
    )
    mem_per_job_gb = 8.0
    disk_gb = 8.0
    # flashinfer/jit/cpp_ext.py (v0.6.1) writes each AOT module's ninja file from its own flag lists: CFLAGS and
    # CXXFLAGS reach none of it; .cpp files add FLASHINFER_EXTRA_CFLAGS, .cu files FLASHINFER_EXTRA_CUDAFLAGS
    isa_flag_variables = {"FLASHINFER_EXTRA_CFLAGS": "host", "FLASHINFER_EXTRA_CUDAFLAGS": "nvcc"}
    isa_flags_not_reached = ("CFLAGS/CXXFLAGS reach none of the AOT modules (FLASHINFER_EXTRA_* do); kernels compiled at "
                             "first use on the user's machine (outside the AOT set, or flashinfer-aot=false) get that "
                             "machine's FLASHINFER_EXTRA_* flags, not the variant's")

    def line_problem(self, line) -> str | None:
        """Why this recipe cannot build the flashinfer a vLLM release line pins (None: its facts are known)."""
        if (version := line.versions.get("flashinfer", VERSION)) in RELEASES:
            return None
        return (f"flashinfer {version}: the flashinfer recipe holds the facts of {', '.join(sorted(RELEASES))} only "
                "(artifact folders the AOT build reads, the flashinfer-tag patch, build requirements); "
                f"read them at v{version} and add them to RELEASES")

    def build_requirements(self, variant) -> tuple[str, ...]:
        """Plus nvshmem for the AOT modules: flashinfer/jit/env.py imports nvidia.nvshmem (headers, library)."""
        if not builds_jit_cache(variant):
            return self.build_requires
        # CUDA 13: at least the version the pypi toolchain installs (backend/toolchains/pypi.py), which the
        # build-requirement lock pins; a range, so that with torch=existing the environment's own nvshmem (the
        # one its torch loads) is used instead of stopping an offline build for want of exactly 3.3.24.
        cu13 = variant.cuda.startswith("13.")
        return self.build_requires + (("nvidia-nvshmem-cu13>=3.3.24,<4",) if cu13 else ("nvidia-nvshmem-cu12",))

    def variant_problem(self, variant) -> str | None:
        """sm_70: flashinfer 0.6.1's kernels start at Turing (README.md "GPU Support": SM 7.5 and up; v0.5.3's
        README.md:178 says the same)."""
        if variant.sm == "70":
            return (f"flashinfer {self.version} cannot be built for sm=70: its kernels start at SM 7.5 (README's GPU "
                    "Support table; its release lists start at 7.5), so a V100 has no flashinfer kernels, AOT or JIT; "
                    "leave flashinfer out of -C components (vLLM then uses its Triton/FlexAttention backends there)")
        return None

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        env = {
            "FLASHINFER_CUDA_ARCH_LIST": arch_list(ctx.variant),
            "FLASHINFER_LOCAL_VERSION": ctx.variant.label,
        }
        if uses_cubins(ctx.variant) and CUBIN in ctx.extras:
            # get_cubin() reads FLASHINFER_CUBIN_DIR (jit/env.py:86-88, used by jit/cubin_loader.py:202) and fetches
            # what is missing from FLASHINFER_CUBINS_REPOSITORY (cubin_loader.py:32-35, 208-211; a local path is
            # copied, cubin_loader.py:85-94): both name the lock's wheel, so the build never reaches NVIDIA's server.
            env["FLASHINFER_CUBIN_DIR"] = env["FLASHINFER_CUBINS_REPOSITORY"] = str(ctx.extras[CUBIN] / CUBIN_DIR)
        if builds_jit_cache(ctx.variant, ctx.settings):
            given = ctx.settings.flashinfer_aot_config  # as given, or as project.load_settings made it: both read here
            config = (given and aot_config("flashinfer-aot-config", given, Path.cwd())) or vllm_aot_config(ctx.variant)
            if config != AOT_ALL:  # all: upstream's config=None
                env["FLASHINFER_AOT_CONFIG"] = config  # read by the tag patch's build backend
        return env

    def commands(self, ctx: BuildContext) -> list[list[str]]:
        if not builds_jit_cache(ctx.variant, ctx.settings):
            return [pip_wheel(ctx)]
        steps = []
        if uses_cubins(ctx.variant) and CUBIN in ctx.extras:  # the headers the AOT modules read, before compiling
            # the artifact folders its release's AOT build reads (an unknown release is refused: line_problem)
            pairs = [part for folder, header in RELEASES.get(self.version, CUBIN_HEADERS).items()
                     for part in (folder, header)]
            steps.append([ctx.python, "-c", CHECK_CUBINS, str(ctx.extras[CUBIN] / CUBIN_DIR), *pairs])
        if ctx.tree_version is None and TAG in ctx.extras:  # the lock's sdist: add the tag's packaging folder
            steps.append([ctx.python, "-c", OVERLAY, str(ctx.extras[TAG]), str(ctx.tree)])
        elif not ((ctx.checkout or ctx.tree) / JIT_CACHE_DIR).is_dir():  # a local tree without it: JIT only
            return [pip_wheel(ctx)]
        return steps + [pip_wheel(ctx), pip_wheel(ctx, ctx.tree / JIT_CACHE_DIR)]

    def notes(self, variant) -> list[str]:
        if not builds_jit_cache(variant):
            return [
                "flashinfer has no kernels for sm_61: only flashinfer-python (JIT) is built, and its kernels "
                "will not compile for a Pascal GPU at run time either"
            ]
        notes = [
            f"AOT kernels (flashinfer-jit-cache) for FLASHINFER_CUDA_ARCH_LIST={arch_list(variant)}: the PyPI sdist "
            f"plus the v{self.version} tag's flashinfer-jit-cache/ folder (lock entry flashinfer-tag); "
            "-C flashinfer-aot=false builds flashinfer-python alone (kernels then compile at first use and need nvcc "
            "there); -C flashinfer-aot-config picks the module set (FLASHINFER_AOT_CONFIG in the plan's environment): "
            "by " + ("default what vLLM 0.15.1 calls on this SM" if self.line is None or self.line.base else
                     "default the set read in vLLM 0.14.1's and 0.16.0's sources "
                     f"(vLLM {self.line.vllm} is built)")
            + ", all for flashinfer's whole list",
            "vLLM call paths outside the default (vllm) AOT set, compiled at first use (need nvcc and ninja "
            "there): " + "; ".join(VLLM_STILL_JIT),
        ]
        if variant.sm == "103":
            notes.append("sm103: the jit-cache holds sm_103a code only; compiled at first use instead (JIT, needs nvcc "
                         "there), as upstream builds them only with 10.0a in the list, some for sm_100a alone: "
                         + "; ".join(SM100_ONLY_MODULES))
        if uses_cubins(variant):
            notes.append(f"flashinfer-cubin {self.version} (lock entry flashinfer-cubin, PyPI wheel) goes into the "
                         "wheelhouse unchanged: the trtllm-gen and DeepGEMM kernels load their cubins from it, not from "
                         "NVIDIA's artifact server; the AOT build reads its checksums and headers (FLASHINFER_CUBIN_DIR). "
                         "The cuDNN SDPA cubins of the cudnn backend (artifacts.py:97) are in no PyPI wheel: "
                         "that opt-in backend still downloads them at first use")
        return notes

    def unused_sources(self, variant, settings) -> tuple[str, ...]:
        unused = () if builds_jit_cache(variant, settings) else (TAG,)
        return unused + (() if uses_cubins(variant) else (CUBIN,))

    def bundled_wheels(self, variant, settings) -> tuple[str, ...]:
        return (CUBIN,) if uses_cubins(variant) else ()

    def runtime_requires(self, variant) -> tuple[str, ...]:
        # flashinfer-python finds the installed flashinfer_cubin package first (jit/env.py:66-83; versions must match)
        return (f"flashinfer-cubin=={self.version}",) if uses_cubins(variant) else ()

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code on CUDA.
    smoke_gpu = """
import torch, flashinfer
x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
w = torch.ones(256, device="cuda", dtype=torch.float16)
ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
assert torch.allclose(flashinfer.norm.rmsnorm(x, w).float(), ref, atol=2e-2), "flashinfer.norm.rmsnorm"
"""


RECIPE = Flashinfer()
