#!/usr/bin/env bash
# The headline command on the H200, cold and offline: `pip wheel .`, not the CLI.
#
#   ci/device/headline_h200.sh DIR
#
# DIR (git-ignored, carried to the device) holds what a machine with no
# network needs, prepared on a machine with one (docs/VALIDATION.md says how):
#   DIR/cache/downloads/  the lock's bitsandbytes 0.49.1 and flashinfer 0.6.1
#                         sources, as `python -m backend fetch` leaves them
#   DIR/sdists/xformers-0.0.34.tar.gz   the xformers release for the image's torch 2.11
#   DIR/wheels/           small wheels the image lacks (pyelftools, iced-x86, ...)
# The user's environment is the image's venv with its torch; its pip is the
# same release (24.0) as the build venv's from ensurepip. The cache starts
# with the downloads only. Results go to $OUT.
# flashinfer-python's runtime dependencies include nvidia-cutlass-dsl (two
# 90 MB wheels), more than the device tool carries: the wheelhouse is built
# wheels only (runtime-deps=none, smoke=off) and the install below takes the
# image's packages plus DIR/wheels.
set -uo pipefail
cd "$(dirname "$0")/../.."
DIR=$(realpath "$1")
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XFORMERS_DISABLE_FLASH_ATTN=1
status=0
source ci/device/lib.sh
machine

step "the user's environment: the image's own venv (its torch), plus what it lacks"
PY=$(command -v python3)
rm -rf /tmp/vs-cache /tmp/vs-wh /tmp/dist /tmp/xformers-src /tmp/run
"$PY" -m pip install -q --no-index --find-links "$DIR/wheels" \
  pyelftools iced-x86 platformdirs filelock 'packaging>=24.2' trove-classifiers scikit-build-core \
  'apache-tvm-ffi>=0.1.6,!=0.1.8,!=0.1.8.post0,<0.2' nvidia-ml-py 'setuptools>=77' || status=1
"$PY" -m pip --version
mkdir -p /tmp/vs-cache && cp -r "$DIR/cache/downloads" /tmp/vs-cache/
mkdir -p /tmp/xformers-src && tar -xzf "$DIR"/sdists/xformers-0.0.34.tar.gz -C /tmp/xformers-src --strip-components=1
ISA=$("$PY" -m backend detect --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["isa"])')

step "pip wheel . (cold cache, offline, --no-build-isolation for torch=existing)"
time "$PY" -m pip wheel . --no-build-isolation -w /tmp/dist -v \
  -C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing -C offline=true \
  -C components=bitsandbytes,flashinfer,xformers -C source.xformers=/tmp/xformers-src \
  -C runtime-deps=none -C smoke=off -C flashinfer-aot=false \
  -C cache-dir=/tmp/vs-cache -C wheelhouse=/tmp/vs-wh > "$OUT/pip-wheel.log" 2>&1 || status=1
grep -v "^\s*|" "$OUT/pip-wheel.log" | grep -E "^\s+(==|\[|component|-----|bitsandbytes|flashinfer|xformers|torch|wheelhouse|verification|error)" | tail -60
ls /tmp/dist /tmp/vs-wh/*/

step "install the wheelhouse through the returned wheel, no index"
# A fresh venv that sees the image's torch (and its CUDA libraries) through a .pth.
python3 -m venv /tmp/run
"$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' \
  > /tmp/run/lib/python3.12/site-packages/image-torch.pth
RETURNED=$(ls /tmp/dist/*.whl | head -1)
if /tmp/run/bin/python -m pip install --no-index --find-links /tmp/vs-wh/* --find-links "$DIR/wheels" "$RETURNED" \
     > "$OUT/install.log" 2>&1; then
  echo "installed with dependencies"
else
  tail -3 "$OUT/install.log"
  echo "dependencies missing on this machine (above); installing the wheelhouse without them"
  /tmp/run/bin/python -m pip install --no-index --no-deps /tmp/vs-wh/*/*.whl "$RETURNED" >> "$OUT/install.log" 2>&1 || status=1
fi
/tmp/run/bin/python -m pip list 2>/dev/null | grep -Ei "^(torch|bitsandbytes|flashinfer|xformers|vllm)" | tee "$OUT/installed.txt"

step "GPU checks on the installed wheels"
cd /tmp
/tmp/run/bin/python "$OLDPWD/ci/device/check_bitsandbytes.py" | tee "$OUT/bitsandbytes-gpu.json" || status=1
/tmp/run/bin/python "$OLDPWD/ci/device/check_flashinfer.py" 2>&1 | tail -30 | tee "$OUT/flashinfer-gpu.json" || status=1
/tmp/run/bin/python "$OLDPWD/ci/device/check_xformers.py" | tee "$OUT/xformers-gpu.json" || status=1
cd "$OLDPWD"

step "the slow test: the real xformers sdist for one SM (pytest -m slow)"
VLLM_STACK_XFORMERS_SDIST="$DIR/sdists/xformers-0.0.34.tar.gz" "$PY" -m pytest -q -m slow \
  tests/test_frontends.py -k xformers -p no:cacheprovider -rs 2>&1 | tail -5 | tee "$OUT/slow-xformers.txt"
grep -q "1 passed" "$OUT/slow-xformers.txt" || status=1
cp /tmp/vs-wh/*/manifest.json "$OUT/manifest.json" 2>/dev/null
exit $status
