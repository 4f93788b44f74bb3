# Shared by the device scripts (sourced): section headers and what the machine is.
step() { echo; echo "### $*"; }

machine() {
  step "machine"
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
  nvcc --version | tail -2
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
}
