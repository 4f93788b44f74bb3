"""xformers 0.0.33.post2 (PyPI sdist, bundles CUTLASS and flash-attention) against the variant's torch.

0.0.33.post2 is xformers' release for torch 2.9.1 (its PyPI wheels require
``torch==2.9.1``; 0.0.30's require ``torch==2.7.0``), see the lock's ``why``.
setup.py (read in the 0.0.33.post2 sdist): nvcc always gets ``--threads 4``
(CUDA >= 11.2), so one compile job is four threads' worth of cores and
memory.  Its own flash-attention 2 is off unless XFORMERS_DISABLE_FLASH_ATTN=0
(``get_flash_attention2_nvcc_archs_flags`` defaults it to "1"): FA2 comes from
torch's flash attention.  Flash-attention 3 is compiled only for 9.0, and its
Hopper kernels (wgmma) need the ``9.0a`` target, which setup.py emits only
when TORCH_CUDA_ARCH_LIST says ``9.0a``: on sm_90 the recipe replaces the
engine's TORCH_CUDA_ARCH_LIST (the target's ``capability``, which
torch.utils.cpp_extension reads for every other extension) with the target's
``arch_specific`` spelling.
"""

from .base import BuildContext, Recipe, cpp_extension_arch_problem


class Xformers(Recipe):
    name = "xformers"
    version = "0.0.33.post2"
    build_requires = ("setuptools>=70.1.0", "wheel", "ninja")
    mem_per_job_gb = 6.0
    fixed_nvcc_threads = 4
    disk_gb = 6.0
    # setup.py (0.0.33.post2 sdist, line 538): nvcc_flags += shlex.split(os.getenv("NVCC_FLAGS", "")), for every
    # CUDA extension, flash-attention 3 included; its C++ compiles take CFLAGS through setuptools
    isa_flag_variables = {"NVCC_FLAGS": "nvcc"}

    def torch_arch_list(self, variant) -> str:
        """TORCH_CUDA_ARCH_LIST as xformers gets it: on sm_90 the arch-specific 9.0a (FA3), else the engine's."""
        return variant.target.arch_specific if variant.sm == "90" else variant.target.capability

    def variant_problem(self, variant) -> str | None:
        # setup.py (0.0.33.post2) hands TORCH_CUDA_ARCH_LIST to torch's cpp_extension for its main extension; its own
        # FA2/FA3 skip what they do not support (num < 80, lines 201-203; only 80/90, line 303), and its README
        # (line 99) suggests 6.0-8.6 with 7.0: sm_70 builds (fmha's cutlass op: CUDA_MINIMUM_COMPUTE_CAPABILITY (5, 0),
        # xformers/ops/fmha/common.py:391), though upstream's own wheels start at 7.5 (wheels_build.yml).
        return cpp_extension_arch_problem("xformers", self.torch_arch_list(variant))

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        env = {
            "FORCE_CUDA": "1",
            "BUILD_VERSION": self.local_version(ctx.variant, ctx.tree_version),
            # as upstream's PyPI wheels (.github/workflows/wheels_build.yml, env XFORMERS_BUILD_TYPE: "Release"); its
            # default RelWithDebInfo adds --generate-line-info, and with line information cicc writes the build
            # folder into every cubin, where no prefix map reaches (docs/WHEELS.md, reproducible wheels)
            "XFORMERS_BUILD_TYPE": "Release",
        }
        if ctx.variant.sm == "90":  # FA3: the arch-specific spelling in place of the engine's TORCH_CUDA_ARCH_LIST=9.0
            env["TORCH_CUDA_ARCH_LIST"] = self.torch_arch_list(ctx.variant)
        return env

    def notes(self, variant) -> list[str]:
        fa3 = ("xformers gets TORCH_CUDA_ARCH_LIST=9.0a: FlashAttention-3 (Hopper only, wgmma) is built; its kernels "
               "are sm_90a" if variant.sm == "90" else "FlashAttention-3 is Hopper-only and is not built for this SM")
        return [fa3, "xformers' own FlashAttention-2 is not compiled (0.0.33 default): its FA2 path calls torch's "
                "flash attention"]

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code on CUDA.
    smoke_gpu = """
import torch, xformers.ops as xops
q = torch.randn(1, 32, 2, 64, device="cuda", dtype=torch.float16)
out = xops.memory_efficient_attention(q, q, q)
ref = torch.softmax((q.transpose(1, 2).float() @ q.transpose(1, 2).float().transpose(-1, -2)) / 8.0, -1) @ q.transpose(1, 2).float()
assert torch.allclose(out.float(), ref.transpose(1, 2), atol=2e-2), "xformers memory_efficient_attention"
"""


RECIPE = Xformers()
