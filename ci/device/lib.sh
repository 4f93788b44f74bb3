# Shared by the device scripts (sourced): section headers and what the machine is.
step() { echo; echo "### $*"; }

machine() {
  step "machine"
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
  nvcc --version | tail -2
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
}

# The start of a script given a carried folder: DIR (its real path), OUT (made), status=0, the machine described.
begin() {
  DIR=$(realpath "$1")
  OUT=${OUT:-/tmp/device-out}
  mkdir -p "$OUT"
  export PYTHONUNBUFFERED=1
  status=0
  machine
}

# The backend's needs (pyproject.toml's [build-system] requires, which backend/needs.py checks) and what the
# builds import, pinned as the lock pins them, from the folder of wheels carried for the image's Python into
# it; each script names its extras after the folder.  The requires are read from pyproject.toml, not copied
# here: a copy missed setuptools-scm when the backend began to need it, and every build then stopped at once.
install_needs() {
  local wheels=$1; shift
  local requires
  mapfile -t requires < <(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
  python3 -m pip install -q --no-index --find-links "$wheels" "${requires[@]}" trove-classifiers \
    'apache-tvm-ffi>=0.1.6,!=0.1.8,!=0.1.8.post0,<0.2' setuptools==80.10.2 packaging==26.4 "$@"
}

# The ISA detect recommends for this machine (-C isa=...).
detected_isa() {
  python3 -m backend detect --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["isa"])'
}
