#!/usr/bin/env bash
# vLLM's configure with the lock's side trees, offline, then FA3 and CUTLASS 3.x
# units compiled for sm_90a (docs/VALIDATION.md, "vLLM units on the H200").
#
#   ci/device/vllm_units.sh PAYLOAD
#
# PAYLOAD holds archives made elsewhere from upstream (nothing of them is
# committed here; docs/VALIDATION.md says how each was made):
#   vllm.tar.gz            a vLLM sdist's CMakeLists.txt cmake/ csrc/ setup.py ... (top folder stripped)
#   flash-attn.tar.gz      vllm-project/flash-attention at the lock's commit
#   cutlass-v4.2.1.tar.gz  CUTLASS at the lock's tag (no media/ docs/ examples/ test/)
#   cutlass-147f5673.tar.gz  FlashMLA's CUTLASS (include, tools/util); another file: FLASHMLA_CUTLASS=<name>
#                          (0.14.x: cutlass-e94e888d.tar.gz, FlashMLA 46d64a8e's gitlink)
#   cutlass-62750a2b.tar.gz  optional: flash-attention's own submodule pin (include), the comparison
#   flashmla.tar.gz        optional: FlashMLA at the lock's commit; without it, empty stand-in files at
#                          the paths flashmla.cmake lists (configure only; no FlashMLA unit is compiled)
#   repo.tar.gz            optional: this repository (backend/ patches/ ci/), when the tree that runs is another
# Results: $OUT (default /tmp/vllm-units-out).
# UNITS="a.cu b.cu": compile these units (suffixes in compile_commands.json) instead of the FA3 and
# scaled_mm ones (another release line's check, docs/RELEASES.md).
# VLLM_LINE=0.14.1: the release line the payload is (-C vllm; default 0.15.1): its patches (by When:) and
# the vllm recipe's environment for it.
set -uo pipefail
PAYLOAD=$(realpath "${1:?payload folder}")
OUT=${OUT:-/tmp/vllm-units-out}
W=${WORK_DIR:-/tmp/vllm-units}
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -f "$PAYLOAD/repo.tar.gz" ]; then
  mkdir -p "$W/repo" && tar -xzf "$PAYLOAD/repo.tar.gz" -C "$W/repo" && REPO=$W/repo
fi
unpack() { mkdir -p "$2" && tar -xzf "$PAYLOAD/$1" -C "$2" "${@:3}"; }

echo "### machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
nvcc --version | tail -2
cmake --version | head -1
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'
nproc; free -g | head -2

echo "### trees"
unpack vllm.tar.gz "$W/vllm" --strip-components=1
unpack flash-attn.tar.gz "$W/vllm-flash-attn"
unpack cutlass-v4.2.1.tar.gz "$W/vllm-cutlass"
unpack cutlass-v4.2.1.tar.gz "$W/vllm-flash-attn/csrc/cutlass"   # the lock's vllm-flash-attn-cutlass (dest)
ALT=()
if [ -f "$PAYLOAD/cutlass-62750a2b.tar.gz" ]; then
  unpack cutlass-62750a2b.tar.gz "$W/cutlass-62750a2b"
  cp -a "$W/vllm-flash-attn" "$W/fa-unpatched"
  ALT=(--alt fwd-unpatched-cutlass-62750a2b=hopper/instantiations/flash_fwd_hdim128_bf16_sm90.cu
       --swap "$W/vllm-flash-attn/csrc/cutlass=$W/cutlass-62750a2b" --swap "$W/vllm-flash-attn=$W/fa-unpatched")
fi
if [ -s "$PAYLOAD/flashmla.tar.gz" ]; then
  unpack flashmla.tar.gz "$W/flashmla"
else
  mkdir -p "$W/flashmla/flash_mla"
  echo "import torch" > "$W/flashmla/flash_mla/flash_mla_interface.py"
  grep -o '${flashmla_SOURCE_DIR}/csrc/[A-Za-z0-9_/.]*\.\(cu\|cpp\)' "$W/vllm/cmake/external_projects/flashmla.cmake" |
    sed "s#\${flashmla_SOURCE_DIR}#$W/flashmla#" | while read -r f; do mkdir -p "$(dirname "$f")"; : > "$f"; done
  echo "FlashMLA: stand-in (empty files at the listed paths)"
fi
unpack "${FLASHMLA_CUTLASS:-cutlass-147f5673.tar.gz}" "$W/flashmla/csrc/cutlass"
mkdir -p "$W/qutlass" "$W/triton-kernels/python/triton_kernels/triton_kernels"   # nothing of them is compiled for 9.0

echo "### patches (the repository's patches/vllm/<entry>/ for the side trees)"
python3 - "$REPO" "$W" "${VLLM_LINE:-0.15.1}" <<'PY' || exit 1
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backend.sources import patches, vllm_release
work, lock = Path(sys.argv[2]), vllm_release.line_lock(sys.argv[3])
for entry in patches.entry_folders("vllm"):  # each tree gets the patches for the version its line pins
    print(entry, patches.apply(work / entry, "vllm", entry=entry, version=lock.entries[entry].version))
PY

echo "### configure and compile"
FA=hopper/instantiations/flash_fwd_hdim128_bf16_sm90.cu
if [ -n "${UNITS:-}" ]; then
  read -r -a unit_list <<< "$UNITS"
  SELECT=()
  for u in "${unit_list[@]}"; do SELECT+=(--unit "$u"); done
  ALT=()
else
  SELECT=(--unit "$FA" --unit csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm90_fp8.cu
          --derive "flash_bwd_hdim128_bf16_sm90=hopper/instantiations/flash_bwd_hdim128_bf16_sm90.cu:$FA"
          --drop=-DFLASHATTENTION_DISABLE_BACKWARD)
fi
python3 "$REPO/ci/device/vllm_units.py" --vllm "$W/vllm" --out "$OUT" --build "$W/build" \
  --extra "vllm-cutlass=$W/vllm-cutlass" --extra "vllm-flash-attn=$W/vllm-flash-attn" \
  --extra "flashmla=$W/flashmla" --extra "qutlass=$W/qutlass" --extra "triton-kernels=$W/triton-kernels" \
  --line "${VLLM_LINE:-0.15.1}" "${SELECT[@]}" "${ALT[@]}" --deadline "${DEADLINE:-540}"
status=$?
for o in "$W"/build/vllm-flash-attn/CMakeFiles/_vllm_fa3_C.dir/hopper/instantiations/*.o "$W"/build/CMakeFiles/_C.dir/csrc/quantization/w8a8/cutlass/c3x/*.o \
         $(find "$W"/build/CMakeFiles -path '*flashmla*' -name '*.o' 2>/dev/null); do
  [ -f "$o" ] && { echo "$(basename "$o"): $(stat -c %s "$o") bytes"; cuobjdump --list-elf "$o" 2>&1 | head -3; }
done
exit $status
