#!/usr/bin/env bash
# Byte-identical rebuilds on the GPU machine (docs/VALIDATION.md, section "Reproducible wheels"):
# real bitsandbytes 0.49.1 and xformers built twice, in two cache folders at two times, the second
# without the compiler cache; the sha256 sums compared, and each difference named by rebuild-check's
# comparison.
#
#   ci/device/rebuild_h200.sh BITSANDBYTES_SRC XFORMERS_SDIST WHEELS
#
# BITSANDBYTES_SRC: `git archive 0.49.1` of bitsandbytes-foundation/bitsandbytes; XFORMERS_SDIST: the
# xformers 0.0.34 sdist from PyPI (the release for the machine's torch 2.11), built with flash
# attention off as in ci/device/run_h200.sh.  Nothing of either is committed here.  WHEELS: a folder of
# wheels for the image's Python holding the backend's needs (ci/device/lib.sh install_needs).  Results go to $OUT.
# COMPONENTS=bitsandbytes builds one of the two (less device time).
set -uo pipefail
cd "$(dirname "$0")/../.."
BNB_SRC=$(realpath "$1")
XF_SDIST=$(realpath "$2")
WHEELS=$(realpath "$3")
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
source ci/device/lib.sh
machine 2>&1 | tee "$OUT/machine.txt"
step "the backend's needs, from the carried wheels, into the image's venv"
install_needs "$WHEELS" scikit-build-core || exit 1   # bitsandbytes builds with scikit-build-core
ISA=$(detected_isa)
rm -rf /tmp/xformers-src && mkdir -p /tmp/xformers-src && tar -xzf "$XF_SDIST" -C /tmp/xformers-src --strip-components=1
# Flash attention off, as in run_h200.sh: a build passes no XFORMERS_DISABLE_FLASH_ATTN of the caller's
# (environment.CALLER_KEPT), so the local tree's default is changed instead (FA3's units take most of an hour).
sed -i 's/os.getenv("XFORMERS_DISABLE_FLASH_ATTN", "0")/os.getenv("XFORMERS_DISABLE_FLASH_ATTN", "1")/' /tmp/xformers-src/setup.py
grep -c 'XFORMERS_DISABLE_FLASH_ATTN", "1"' /tmp/xformers-src/setup.py
unset SOURCE_DATE_EPOCH

build() {  # FOLDER COMPILER_CACHE
  step "build in $1 (compiler cache: $2) at $(date -u +%H:%M:%S)"
  local started=$SECONDS
  python3 -m backend build -C sm=90 -C "isa=$ISA" -C cuda=13.0 -C toolchain=system \
    -C torch=existing -C existing-torch=accept -C offline=true -C "components=${COMPONENTS:-bitsandbytes,xformers}" -C verify=warn \
    -C "source.bitsandbytes=$BNB_SRC" -C source.xformers=/tmp/xformers-src -C smoke=off -C runtime-deps=none \
    -C "compiler-cache=$2" -C "cache-dir=$1/cache" -C "wheelhouse=$1/wheelhouse" 2>&1 \
    | grep -v "^\s*|" | tail -25
  echo "build took $((SECONDS - started)) s"
  (cd "$1"/wheelhouse/*/ && sha256sum ./*.whl)
}

build /tmp/repro-one auto | tee "$OUT/build-1.txt"
sleep 2  # a later second, for anything that still reads the clock
build /var/tmp/another-folder/repro-two none | tee "$OUT/build-2.txt"

step "comparison"
python3 - "$OUT" <<'PY' | tee "$OUT/comparison.txt"
import glob, hashlib, json, pathlib, sys
from backend.wheels.rebuild_check import compare_wheels
one = sorted(glob.glob("/tmp/repro-one/wheelhouse/*/*.whl"))
result = {}
for path in one:
    name = pathlib.Path(path).name
    other = glob.glob(f"/var/tmp/another-folder/repro-two/wheelhouse/*/{name}")
    sums = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in [path, *other]]
    found = compare_wheels(pathlib.Path(path), pathlib.Path(other[0]),
                           folders=("/tmp/repro-one", "/var/tmp/another-folder")) if other else None
    result[name] = {"sha256": sums, "identical": len(sums) == 2 and sums[0] == sums[1],
                    "differences": None if found is None else [d.describe() for d in found]}
    print(name, "identical" if result[name]["identical"] else "DIFFERENT", *sums)
    for text in result[name]["differences"] or []:
        print(text)
json.dump(result, open(pathlib.Path(sys.argv[1]) / "comparison.json", "w"), indent=2)
sys.exit(0 if one and all(r["identical"] for r in result.values()) else 1)
PY
