#!/usr/bin/env bash
# Issue 25 items 1 and 3 on the GPU machine: detect on the real driver; flashinfer's AOT set, counted by its own
# aot.py generator, whole (all) and vLLM's (the default, -C flashinfer-aot-config=vllm); `pip wheel .` with
# torch=existing building a representative part of the default set for sm_90a (the whole default does not fit one
# 10-minute command); then flashinfer called as vLLM calls it (ci/device/check_flashinfer_vllm_calls.py) with nvcc
# and ninja out of reach and an empty JIT workspace, with first-call latencies.
#
#   ci/device/deploy_aot_h200.sh DIR   # DIR/dl: the lock's flashinfer sdist and tag archive; DIR/wheels: the
#                                      # backend's needs for the image's Python
set -uo pipefail
source ci/device/lib.sh
begin "$1"
PY=$(command -v python3)

step "what the backend and the build need, into the image's venv"
install_needs "$DIR/wheels" nvidia-ml-py || status=1

step "python -m backend detect (the real driver)"
"$PY" -m backend detect 2>&1 | tee "$OUT/detect.txt"
"$PY" -m backend detect --json > "$OUT/detect.json" 2>&1
ISA=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["isa"])' "$OUT/detect.json")

step "the AOT set for 9.0a, counted with flashinfer's own aot.py: all, then vLLM's default"
mkdir -p /tmp/fi-tree && tar -xzf "$DIR"/dl/flashinfer-0.6.1.tar.gz -C /tmp/fi-tree --strip-components=1
"$PY" -c 'from backend.recipes.flashinfer import vllm_aot_config; from backend.variants import Variant
print(vllm_aot_config(Variant(sm="90", isa="avx512", cuda="13.0")))' > "$OUT/vllm-sm90.json"
FLASHINFER_CUDA_ARCH_LIST=9.0a "$PY" ci/device/flashinfer_aot_modules.py count /tmp/fi-tree "$OUT/count-all.json" 2>&1 | tail -14
FLASHINFER_CUDA_ARCH_LIST=9.0a "$PY" ci/device/flashinfer_aot_modules.py count /tmp/fi-tree "$OUT/count-vllm.json" "$OUT/vllm-sm90.json" 2>&1 | tail -14

step "pip wheel . (torch=existing, offline): a representative part of the default set"
"$PY" - "$OUT/vllm-sm90.json" > /tmp/part.json <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
base = "batch_prefill_with_kv_cache_dtype_q_bf16_dtype_kv_bf16_dtype_o_bf16_dtype_idx_i32_head_dim_qk_128_" \
       "head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False"
config["modules"] = [base, base + "_sm90", "cascade", "sampling", "rope", "spdlog"]
print(json.dumps(config))
PY
cp /tmp/part.json "$OUT/part.json"
rm -rf /tmp/vs-cache /tmp/vs-wh /tmp/dist && mkdir -p /tmp/vs-cache/downloads && cp "$DIR"/dl/flashinfer-* /tmp/vs-cache/downloads/
start=$(date +%s)
"$PY" -m pip wheel . --no-build-isolation -w /tmp/dist -v \
  -C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing -C existing-torch=accept -C offline=true \
  -C components=flashinfer -C flashinfer-aot-config=/tmp/part.json -C runtime-deps=none -C smoke=off \
  -C cache-dir=/tmp/vs-cache -C wheelhouse=/tmp/vs-wh > "$OUT/pip-wheel.log" 2>&1 || status=1
echo "pip wheel: $(( $(date +%s) - start )) s"
grep -E "AOT config|^\s*\[|verification|error|Error| ok$|built in" "$OUT/pip-wheel.log" | cut -c1-300 | tail -25
ls -la /tmp/vs-wh/*/ 2>&1 | head

step "flashinfer as vLLM calls it: no nvcc, no ninja, empty JIT workspace"
python3 -m venv /tmp/run
"$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' \
  > "$(/tmp/run/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/image-torch.pth"
/tmp/run/bin/python -m pip install -q --no-index --no-deps /tmp/vs-wh/*/flashinfer_python-*.whl \
  /tmp/vs-wh/*/flashinfer_jit_cache-*.whl || status=1
mkdir -p /tmp/empty-ws
env -i HOME=/tmp PATH=/nonexistent CUDA_HOME=/nonexistent FLASHINFER_WORKSPACE_BASE=/tmp/empty-ws \
  /tmp/run/bin/python ci/device/check_flashinfer_vllm_calls.py > "$OUT/vllm-calls.json" 2> "$OUT/vllm-calls.err" || status=1
cat "$OUT/vllm-calls.json"; tail -5 "$OUT/vllm-calls.err"
echo "status $status"
exit $status
