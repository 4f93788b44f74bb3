#!/usr/bin/env bash
# Issue 22 on a GPU machine (an H100/H200; nothing Blackwell runs there, it need not): flashinfer-jit-cache for
# sm100 (trtllm-gen FMHA launcher fmha_gen + norm, ci/device/aot_blackwell_sm100.json) and sm103
# (fp4_quantization_103 + norm, aot_blackwell_sm103.json) built by the pipeline offline with verify=strict, the
# trtllm-gen checksums.txt and flashInferMetaInfo.h read from the lock's flashinfer-cubin 0.6.1 wheel, which goes
# into the wheelhouse; then the failures that must happen: offline without the cubin wheel (stops before
# compiling), and the jit-cache wheel verified without it (refused: its kernels would download their cubins).
#
#   ci/device/flashinfer_blackwell_aot.sh DIR   # DIR/dl: the lock's flashinfer sdist, tag archive and
#                                               # flashinfer_cubin-0.6.1-py3-none-any.whl; DIR/wheels: the
#                                               # backend's needs for the image's Python (3.12)
set -uo pipefail
source ci/device/lib.sh
begin "$1"

step "what the backend and the build need, into the image's venv"
install_needs "$DIR/wheels" nvidia-ml-py || status=1
sha256sum "$DIR"/dl/*
ISA=$(detected_isa)

step "offline without the cubin wheel: stops before compiling, naming it"
mkdir -p /tmp/bw-missing/downloads && cp "$DIR"/dl/flashinfer-* /tmp/bw-missing/downloads/
python3 -m backend build -C sm=100 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing -C existing-torch=accept \
  -C offline=true -C components=flashinfer -C cache-dir=/tmp/bw-missing -C wheelhouse=/tmp/bw-missing-wh \
  > "$OUT/bw-missing.log" 2>&1 && { echo "UNEXPECTED: built without the cubin wheel"; status=1; }
tail -1 "$OUT/bw-missing.log"; ls /tmp/bw-missing-wh 2>/dev/null | head -3

step "sm100 and sm103 side by side: flashinfer with its AOT kernels (a subset), offline, verify=strict, torch=existing"
build() {  # SM: the pipeline's build of flashinfer for that SM, its log in $OUT
  local SM=$1 start=$(date +%s) rc=0
  mkdir -p /tmp/bw-$SM/downloads && cp "$DIR"/dl/* /tmp/bw-$SM/downloads/
  python3 -m backend build -C sm=$SM -C "isa=$ISA" -C cuda=13.0 -C toolchain=system -C torch=existing -C existing-torch=accept \
    -C offline=true -C components=flashinfer -C flashinfer-aot-config=ci/device/aot_blackwell_sm$SM.json \
    -C smoke=off -C verify=strict -C cache-dir=/tmp/bw-$SM -C wheelhouse=/tmp/bw-wh-$SM > "$OUT/bw-$SM.log" 2>&1 || rc=1
  echo "sm$SM build: $(( $(date +%s) - start )) s, exit $rc" >> "$OUT/bw-$SM.log"
  return $rc
}
build 100 & P100=$!
build 103 & P103=$!
wait $P100 || status=1
wait $P103 || status=1
for SM in 100 103; do
  step "sm$SM"
  grep -E "^\[|error|verification|AOT config|Total ops|Successfully compiled|cubins|sm_10|FLASHINFER_CU| build: " "$OUT/bw-$SM.log" | tail -25
  ls -la /tmp/bw-wh-$SM/*/
  python3 - /tmp/bw-wh-$SM <<'PY'
import json, sys, zipfile
from pathlib import Path
house = next(Path(sys.argv[1]).iterdir())
manifest = json.loads((house / "manifest.json").read_text())["wheels"]
for name, entry in sorted(manifest.items()):
    print(name, entry.get("origin"), entry.get("source_hash"), "cubins:", entry.get("cubins"))
    if "jit_cache" in name:
        print("  ", sorted(n for n in zipfile.ZipFile(house / name).namelist() if n.endswith(".so")))
for w in house.glob("flashinfer_python-*.whl"):
    z = zipfile.ZipFile(w)
    meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    print("flashinfer-python requires:", [l for l in meta.splitlines() if l.startswith("Requires-Dist: flashinfer")])
PY
  cp /tmp/bw-wh-$SM/*/manifest.json "$OUT/bw-manifest-$SM.json" 2>/dev/null
done

step "the sm100 jit-cache wheel verified alone (no flashinfer-cubin beside it): refused"
JIT=$(ls /tmp/bw-wh-100/*/flashinfer_jit_cache-*.whl 2>/dev/null | head -1)
if [ -n "$JIT" ]; then
  mkdir -p /tmp/bw-alone && cp "$JIT" /tmp/bw-alone/
  python3 -m backend verify /tmp/bw-alone/*.whl -C sm=100 -C "isa=$ISA" -C cuda=13.0 > "$OUT/bw-alone.log" 2>&1 \
    && { echo "UNEXPECTED: accepted"; status=1; }
  grep -i "cubins\|-> " "$OUT/bw-alone.log" | head -5
  python3 -m backend verify /tmp/bw-wh-100/*/ -C sm=100 -C "isa=$ISA" -C cuda=13.0 > "$OUT/bw-house.log" 2>&1 || status=1
  tail -2 "$OUT/bw-house.log"
else
  status=1
fi
exit $status
