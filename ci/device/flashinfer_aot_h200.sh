#!/usr/bin/env bash
# Issue 12 on the H200: flashinfer-jit-cache (AOT kernels for 9.0a) built by the pipeline, a subset
# (-C flashinfer-aot-config=ci/device/aot_subset_sm90.json: head dim 128, fp16, no sliding window or
# soft cap, no MoE/comm/XQA/misc: 10 of the 695 modules), installed, and checked against a float32
# reference attention with nvcc out of reach (ci/device/check_flashinfer_aot.py).
#
#   ci/device/flashinfer_aot_h200.sh DIR        # DIR/dl and DIR/wheels as for wheelhouse_h200.sh
set -uo pipefail
source ci/device/lib.sh
begin "$1"

step "what the backend and the build need, into the image's venv"
install_needs "$DIR/wheels" scikit-build-core || status=1
mkdir -p /tmp/aot-cache/downloads && cp "$DIR"/dl/* /tmp/aot-cache/downloads/

step "the pipeline: flashinfer with its AOT kernels for sm_90 (a subset), offline, torch=existing"
ISA=$(detected_isa)
start=$(date +%s)
python3 -m backend build -C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing \
  -C offline=true -C components=flashinfer -C flashinfer-aot-config=ci/device/aot_subset_sm90.json \
  -C smoke=off -C verify=warn -C cache-dir=/tmp/aot-cache -C wheelhouse=/tmp/aot-wh > "$OUT/aot-pipeline.log" 2>&1 || status=1
echo "build: $(( $(date +%s) - start )) s, status $status"
grep -E "^(==|\[|error|verification|component|flashinfer|  flashinfer)|AOT config from|Total ops|Successfully compiled" "$OUT/aot-pipeline.log" | tail -30
ls -la /tmp/aot-wh/*/
NINJA=$(find /tmp/aot-cache -name .ninja_log -path "*build/aot/*" | head -1)
[ -n "$NINJA" ] && python3 ci/device/flashinfer_aot_modules.py report "$(dirname "$NINJA")" "$OUT/aot-pipeline-times.json"
python3 -c 'import sys, zipfile; [print(w.split("/")[-1], sum(n.endswith(".so") for n in zipfile.ZipFile(w).namelist()), "shared objects") for w in sys.argv[1:]]' /tmp/aot-wh/*/flashinfer*.whl

step "installed into a fresh venv that sees the image's torch; checked with nvcc out of reach"
python3 -m venv /tmp/aot-run
python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' \
  > /tmp/aot-run/lib/python3.12/site-packages/image-torch.pth
/tmp/aot-run/bin/python -m pip install -q --no-index --no-deps /tmp/aot-wh/*/flashinfer*.whl || status=1
mkdir -p /tmp/fi-empty-ws
(cd /tmp && env PATH=/tmp/aot-run/bin:/usr/bin:/bin CUDA_HOME=/nonexistent CUDA_PATH=/nonexistent \
  FLASHINFER_WORKSPACE_BASE=/tmp/fi-empty-ws /tmp/aot-run/bin/python "$OLDPWD/ci/device/check_flashinfer_aot.py") \
  2>&1 | tee "$OUT/aot-check.json"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
cp /tmp/aot-wh/*/manifest.json "$OUT/aot-manifest.json" 2>/dev/null
exit $status
