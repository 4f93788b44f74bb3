#!/usr/bin/env bash
# Issue 16 on the H200: the pipeline's wheelhouse of real bitsandbytes and
# flashinfer, installed with --no-index into a fresh venv by the smoke check
# (-C smoke=auto: CPU and CUDA ops, a Triton kernel), against the image's torch.
#
#   ci/device/wheelhouse_h200.sh DIR [aot-probe]
#
# DIR (git-ignored, carried; prepared with network, docs/VALIDATION.md says how):
#   DIR/dl/       the lock's bitsandbytes 0.49.1, flashinfer 0.6.1 and flashinfer-tag
#                 downloads, as `python -m backend fetch` leaves them
#   DIR/wheels/   what the backend and the builds need and the image lacks
#   DIR/links/    flashinfer-python's runtime wheels the image lacks (-C runtime-find-links);
#                 SPLIT.sha256 (here or in a part folder): wheels too large for one call, carried in parts
#   DIR/part*/    NAME.partN pieces of those, over consecutive calls on a warm machine
# Everything carried is kept in /tmp/i12-keep for the next call while the machine stays warm.
# aot-probe: also count flashinfer's default AOT modules for 9.0a and build a subset with
# its own aot.py (ci/device/flashinfer_aot_modules.py), timed per module.
set -uo pipefail
HERE=$(dirname "$(realpath "$0")")
DIR=$(realpath "$1")
MODE=${2:-}
OUT=${OUT:-/tmp/device-out}
KEEP=/tmp/i12-keep
mkdir -p "$OUT" "$KEEP"
export PYTHONUNBUFFERED=1
status=0
source ci/device/lib.sh
machine




step "the image"
python3 -m pip list --format=freeze > "$OUT/pip-list.txt" 2>/dev/null
grep -iE "^(torch|triton|numpy|setuptools|packaging|nvidia-nvshmem|cuda-bindings|nvidia-cudnn|nvidia-cutlass|apache-tvm|scikit-build|ninja|cmake|protobuf)[=-]" "$OUT/pip-list.txt"
echo "cores $(nproc)"; free -g | head -2; df -h /tmp | tail -1

step "carried files"
for d in dl wheels links partA partB partC partD; do
  [ -d "$DIR/$d" ] && mkdir -p "$KEEP/$d" && cp -n "$DIR/$d"/* "$KEEP/$d/"
done
du -sh "$KEEP"/*
mkdir -p /tmp/links && cp -n "$KEEP"/links/*.whl /tmp/links/
if ls "$KEEP"/*/SPLIT.sha256 > /dev/null 2>&1; then
  while read -r sum name; do
    [ -f "/tmp/links/$name" ] && { echo "$name: whole"; continue; }
    parts=()
    for i in 1 2 3 4; do f=$(find "$KEEP" -name "$name.part$i" | head -1); [ -n "$f" ] && parts+=("$f"); done
    [ ${#parts[@]} -gt 0 ] && cat "${parts[@]}" > "/tmp/$name.joined" || : > "/tmp/$name.joined"
    if [ "$(sha256sum < "/tmp/$name.joined" | cut -d' ' -f1)" = "$sum" ]; then
      mv "/tmp/$name.joined" "/tmp/links/$name"; echo "$name: joined from ${#parts[@]} part(s), sha256 ok"
    else
      rm -f "/tmp/$name.joined"; echo "$name: only ${#parts[@]} part(s) here so far, not in the links"
    fi
  done < <(cat "$KEEP"/*/SPLIT.sha256 | sort -u)
fi
ls /tmp/links

step "what the backend and the builds need, into the image's venv (the user's environment)"
install_needs "$KEEP/wheels" scikit-build-core || status=1
python3 -m pip list --format=freeze 2>/dev/null | grep -iE "^(setuptools|packaging|apache-tvm-ffi|scikit-build-core|nvidia-nvshmem-cu13)=="

step "build bitsandbytes and flashinfer for sm_90 (torch=existing, offline), then the smoke check with GPU"
ISA=$(detected_isa)
mkdir -p /tmp/vs-cache/downloads && cp -n "$KEEP"/dl/* /tmp/vs-cache/downloads/
start=$(date +%s)
python3 -m backend build -C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing \
  -C offline=true -C components=bitsandbytes,flashinfer -C flashinfer-aot=false -C smoke=auto \
  -C runtime-find-links=/tmp/links -C cache-dir=/tmp/vs-cache -C wheelhouse=/tmp/vs-wh > "$OUT/build.log" 2>&1 || status=1
echo "build + smoke: $(( $(date +%s) - start )) s, status $status"
grep -E "^(==|\[|error|smoke|   smoke|runtime|verification|component|bitsandbytes|flashinfer)" "$OUT/build.log" | tail -40
ls -la /tmp/vs-wh/*/
SMOKE_LOG=$(find /tmp/vs-cache -name smoke.log | head -1)
[ -n "$SMOKE_LOG" ] && cp "$SMOKE_LOG" "$OUT/smoke.log" && grep -E "^(== |\$ )" "$OUT/smoke.log" | cut -c1-300

if [ "$MODE" = aot-probe ]; then
  step "flashinfer 0.6.1's AOT modules for 9.0a (its own aot.py): the full set counted, a subset built"
  rm -rf /tmp/fi /tmp/fi-tag /tmp/fi-aot && mkdir -p /tmp/fi /tmp/fi-tag
  tar -xzf "$KEEP/dl/flashinfer-0.6.1.tar.gz" -C /tmp/fi --strip-components=1
  tar -xzf "$KEEP/dl/flashinfer-v0.6.1-tag.tar.gz" -C /tmp/fi-tag --strip-components=1
  cp -r /tmp/fi-tag/flashinfer-jit-cache /tmp/fi/ && cp -n /tmp/fi-tag/version.txt /tmp/fi/
  export FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
  (cd /tmp && python3 "$HERE/flashinfer_aot_modules.py" count /tmp/fi "$OUT/aot-count.json") 2>&1 | tail -20
  cat > /tmp/aot-subset.json <<'EOF'
{"fa2_head_dim": [[128, 128]], "fa3_head_dim": [[128, 128]], "f16_dtype": ["float16"], "f8_dtype": [],
 "use_sliding_window": [false], "use_logits_soft_cap": [false], "add_comm": false, "add_gemma": false,
 "add_oai_oss": false, "add_moe": false, "add_act": false, "add_misc": false, "add_xqa": false}
EOF
  (cd /tmp && timeout 270 python3 "$HERE/flashinfer_aot_modules.py" build /tmp/fi /tmp/fi-aot /tmp/aot-subset.json) > "$OUT/aot-build.log" 2>&1
  echo "subset build rc=$?"; grep -E "Total ops|AOT-BUILD-SECONDS|Error|error:" "$OUT/aot-build.log" | head -20; tail -5 "$OUT/aot-build.log"
  python3 "$HERE/flashinfer_aot_modules.py" report /tmp/fi-aot "$OUT/aot-times.json"
  find /tmp/fi-aot/jit_cache -name "*.so" 2>/dev/null | head -20
fi
exit $status
