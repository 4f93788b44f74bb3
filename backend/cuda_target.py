"""The GPU a variant builds for, in every spelling a build tool or a binary uses.

One ``CudaTarget`` is made from the variant (``Variant.target``), as nixpkgs'
``cudaPackages.flags`` derives every form from one capability; nothing else
spells the SM.  Each recipe passes the one spelling its upstream reads, and says
there which variable reads it (sm=90 / sm=103 on CUDA 13.0):

- ``capability`` 9.0 / 10.3: TORCH_CUDA_ARCH_LIST, set once by ``plan.common_env``
  (torch's CMake, ``torch.utils.cpp_extension`` for torchvision, torchaudio,
  xformers; vLLM's CMake re-reads torch's flags);
- ``arch_specific`` 9.0a / 10.3a: xformers' TORCH_CUDA_ARCH_LIST on sm_90 (its
  setup.py builds FA3 only for 9.0a), FLASHINFER_CUDA_ARCH_LIST;
- ``family`` none / 10.3f (Blackwell on, CUDA 12.9 on): FLASHINFER_CUDA_ARCH_LIST
  for 12.0 (12.0f, as flashinfer's release list);
- ``cmake`` 90 / 103: bitsandbytes' COMPUTE_CAPABILITY, which its CMakeLists
  makes ``cmake_real`` 90-real / 103-real (CMAKE_CUDA_ARCHITECTURES);
- ``gencode`` ``-gencode arch=compute_90,code=sm_90``: what torch's
  select_compute_arch.cmake hands nvcc for 9.0;
- ``cubin`` / ``ptx`` sm_90 / compute_90: cuobjdump's names, verification's;
- ``sm_arch`` 90_real: the PEP 825 variant property.

Which GPU code runs on the target (``cubin_problem``, ``ptx_problem``, ``runs``,
``jits_ptx``) is decided here too, for verification, the existing-torch check and
the driver a wheelhouse needs alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

# Arch-specific targets (sm_90a) exist from Hopper on; family targets (sm_100f) from Blackwell on, with CUDA 12.9
# (nvcc's release notes: "family-specific" architectures).
ARCH_SPECIFIC_MAJOR = 9
FAMILY_MAJOR = 10
FAMILY_CUDA = (12, 9)


@dataclasses.dataclass(frozen=True)
class CudaTarget:
    sm: str                  # "90": the variant's SM, as -C sm= normalises it
    cuda: str | None = None  # "12.9": the CUDA release that compiles it (None: unknown, so no family target)

    @property
    def major(self) -> int:
        return int(self.sm[:-1])

    @property
    def minor(self) -> int:
        return int(self.sm[-1])

    @property
    def capability(self) -> str:
        """9.0: the compute capability, as TORCH_CUDA_ARCH_LIST and nvidia-smi write it."""
        return f"{self.major}.{self.minor}"

    @property
    def arch_specific(self) -> str | None:
        """9.0a: the arch-specific target (code for exactly this SM, with its own instructions); None before Hopper."""
        return f"{self.capability}a" if self.major >= ARCH_SPECIFIC_MAJOR else None

    @property
    def family(self) -> str | None:
        """10.3f: the family target (code for this SM and later members of its major); None where nvcc has none."""
        cuda = tuple(int(part) for part in self.cuda.split(".")) if self.cuda else ()
        return f"{self.capability}f" if self.major >= FAMILY_MAJOR and cuda >= FAMILY_CUDA else None

    @property
    def cmake(self) -> str:
        """90: a CMake CUDA architecture number (CMAKE_CUDA_ARCHITECTURES gives it real and virtual code)."""
        return self.sm

    @property
    def cmake_real(self) -> str:
        """90-real: CMake's real cubin of the SM, no PTX."""
        return f"{self.sm}-real"

    @property
    def cubin(self) -> str:
        """sm_90: the real target, as nvcc's code= and cuobjdump name it."""
        return f"sm_{self.sm}"

    @property
    def ptx(self) -> str:
        """compute_90: the virtual target (PTX), as nvcc's arch= and cuobjdump name it."""
        return f"compute_{self.sm}"

    @property
    def gencode(self) -> tuple[str, str]:
        """nvcc's pair for one real cubin of the SM."""
        return ("-gencode", f"arch={self.ptx},code={self.cubin}")

    @property
    def sm_arch(self) -> str:
        """90_real: the PEP 825 nvidia provider's ``sm_arch`` value (real cubins only)."""
        return f"{self.sm}_real"

    # --- what runs on it ------------------------------------------------------------------------------------

    def cubin_problem(self, sm: str, suffix: str) -> str | None:
        """None when a cubin for ``sm`` + ``suffix`` ("90", "a") runs on this GPU as intended; else why not.

        Accepted: this SM in any form (sm_90, sm_90a; sm_100, sm_100a, sm_100f); a family cubin of the same
        major whose minor is not above this one (sm_100f on sm_103: family code runs on every later member);
        a plain cubin of the same major and a lower minor (sm_80 on sm_86: binary compatible, what vLLM's
        loose arch intersection builds for 8.6 and 8.9).
        """
        if sm == self.sm:
            return None
        if sm[:-1] == self.sm[:-1] and int(sm[-1]) < self.minor:
            return None if suffix in ("f", "") else f"arch-specific sm_{sm}{suffix} code runs only on sm_{sm}"
        return f"sm_{sm}{suffix} code does not run on {self.cubin}"

    def ptx_problem(self, sm: str, suffix: str, asked: bool) -> str | None:
        """None when PTX for ``sm`` + ``suffix`` JIT-compiles for this GPU and was asked for; else why not."""
        if not asked:
            return "PTX was not asked for"
        same_family = suffix == "f" and sm[:-1] == self.sm[:-1] and int(sm[-1]) <= self.minor
        if suffix and sm != self.sm and not same_family:
            return f"compute_{sm}{suffix} PTX compiles only for sm_{sm}"
        too_new = int(sm) > int(self.sm)
        return f"compute_{sm} PTX cannot be compiled for the older {self.cubin}" if too_new else None

    def jits_ptx(self, ptx: Iterable[str], cubins: Iterable[str] = ()) -> bool:
        """Whether this GPU runs some of an object's code by JIT-compiling its PTX (targets as cuobjdump names
        them: compute_80, sm_90a).

        Kernels are not told apart: PTX of this GPU's major beside a cubin that runs here is taken as that
        cubin's (``8.0+PTX`` on an sm_86 runs the sm_80 cubin); PTX of an older major is taken as kernels of
        their own (``8.0+PTX`` on an sm_90: only the PTX can run).
        """
        runs_a_cubin = any(self.cubin_problem(*_split(c)) is None for c in cubins)
        return any(self.ptx_problem(*_split(p), asked=True) is None and (int(_split(p)[0][:-1]) < self.major
                                                                          or not runs_a_cubin) for p in ptx)

    def runs(self, cubins: set[str], ptx: set[str]) -> bool:
        """Whether this GPU runs code holding ``cubins`` and ``ptx`` ("90a", "100f", "80"): a cubin that runs
        here, or PTX the driver compiles for it."""
        # (where no cubin runs, jits_ptx asks only whether some PTX compiles for this GPU)
        return any(self.cubin_problem(*_split(c)) is None for c in cubins) or self.jits_ptx(ptx, cubins)


def _split(target: str) -> tuple[str, str]:
    """sm_90a / compute_100f / 90a -> ("90", "a") / ("100", "f") / ("90", "a")."""
    name = target.rpartition("_")[2]
    sm = name.rstrip("af")
    return sm, name[len(sm):]
