#!/usr/bin/env bash
# The device runs of docs/VALIDATION.md, repeatable: on a machine with an
# NVIDIA GPU (sm_90), CUDA 13 nvcc and PyTorch, and no network.
#
#   ci/device/run_h200.sh BITSANDBYTES_SRC [XFORMERS_SDIST]
#
# BITSANDBYTES_SRC: the upstream tree at the tag the lock pins (e.g.
# `git archive 0.49.1` of bitsandbytes-foundation/bitsandbytes); nothing of it
# is committed here.  Wheels the image lacks (pyelftools, iced-x86,
# trove-classifiers, platformdirs) are taken from .whl/ when present.
# Results go to $OUT (default /tmp/device-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
BNB_SRC=$(realpath "$1")
XF_SDIST=${2:-}
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/carried-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/carried-site${PYTHONPATH:+:$PYTHONPATH}
fi
status=0
source ci/device/lib.sh
machine
python3 -m backend detect | tee "$OUT/detect.txt"
ISA=$(detected_isa)
COMMON=(-C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing -C offline=true
        -C cache-dir=/tmp/vs-cache -C wheelhouse=/tmp/vs-wheelhouse)

step "1. bitsandbytes from $BNB_SRC through the pipeline"
time python3 -m backend build "${COMMON[@]}" -C components=bitsandbytes \
  -C "source.bitsandbytes=$BNB_SRC" 2>&1 | tee "$OUT/bitsandbytes-build.log" | grep -v "^\s*|" | tail -60
BNB_WHEEL=$(ls /tmp/vs-wheelhouse/*/bitsandbytes-*.whl 2>/dev/null | head -1)
if [ -n "$BNB_WHEEL" ]; then
  python3 -m backend verify "$BNB_WHEEL" -C sm=90 -C "isa=$ISA" -C cuda=13.0 | tee "$OUT/bitsandbytes-verify.txt" || status=1
  python3 -m pip install -q --no-deps --no-index --target /tmp/bnb-site "$BNB_WHEEL"
  PYTHONPATH=/tmp/bnb-site:${PYTHONPATH:-} python3 ci/device/check_bitsandbytes.py | tee "$OUT/bitsandbytes-gpu.json" || status=1
else
  echo "no bitsandbytes wheel"; status=1
fi

step "2. fixture torch extension through the pipeline (xformers slot)"
# smoke=cpu: the fixture is no xformers, so the recipe's xformers CUDA op cannot run on it
python3 -m backend build "${COMMON[@]}" -C components=xformers -C smoke=cpu \
  -C source.xformers=tests/fixtures/gpu_extension 2>&1 | tee "$OUT/extension-build.log" | tail -30
EXT_WHEEL=$(ls /tmp/vs-wheelhouse/*/gpu_ext_fixture-*.whl 2>/dev/null | head -1)
if [ -n "$EXT_WHEEL" ]; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/ext-site "$EXT_WHEEL"
  PYTHONPATH=/tmp/ext-site:${PYTHONPATH:-} python3 ci/device/check_gpu_extension.py | tee "$OUT/extension-gpu.json" || status=1
else
  echo "no extension wheel"; status=1
fi

if [ -n "$XF_SDIST" ]; then
  step "3. xformers from the PyPI sdist $XF_SDIST (flash attention off)"
  rm -rf /tmp/xformers-src && mkdir -p /tmp/xformers-src && tar -xzf "$XF_SDIST" -C /tmp/xformers-src --strip-components=1
  XFORMERS_DISABLE_FLASH_ATTN=1 python3 -m backend build "${COMMON[@]}" -C components=xformers -C verify=warn \
    -C source.xformers=/tmp/xformers-src 2>&1 | tee "$OUT/xformers-build.log" | tail -30
  XF_WHEEL=$(ls /tmp/vs-wheelhouse/*/xformers-*.whl 2>/dev/null | head -1)
  if [ -n "$XF_WHEEL" ]; then
    python3 -m pip install -q --no-deps --no-index --target /tmp/xf-site "$XF_WHEEL"
    PYTHONPATH=/tmp/xf-site:${PYTHONPATH:-} python3 ci/device/check_xformers.py | tee "$OUT/xformers-gpu.json" || status=1
  fi
fi

step "4. the same bitsandbytes build as the opt-in test (pytest -m device)"
VLLM_STACK_BNB_SRC="$BNB_SRC" python3 -m pytest -q -m device tests/test_device.py -p no:cacheprovider 2>&1 | tail -5 || status=1

step "wheelhouse"
ls -la /tmp/vs-wheelhouse/*/
python3 - <<'PY'
import glob, zipfile
for wheel in sorted(glob.glob("/tmp/vs-wheelhouse/*/*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [l for l in archive.read(meta).decode().splitlines() if l.startswith("Requires-Dist")]
    print(wheel.rsplit("/", 1)[1]); print("   " + "\n   ".join(requires))
PY
cp /tmp/vs-wheelhouse/*/manifest.json "$OUT/manifest.json" 2>/dev/null
exit $status
