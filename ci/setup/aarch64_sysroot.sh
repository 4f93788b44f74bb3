# Sourced by .ci/run as root (set -euo pipefail in effect); also runs on its own: bash ci/setup/aarch64_sysroot.sh [DIR]
# An aarch64 root filesystem with Python 3 from Debian's arm64 packages (multiarch), for
# `python -m backend verify --emulate -C isa=armv8_2 -C emulate-sysroot=DIR` on an x86-64 host:
# QEMU runs this Python as a Neoverse N1 and it loads the ARM variant's libraries
# (tests/test_verify_emulate.py).  The packages are unpacked (dpkg -x), not installed.  Idempotent.
aarch64_sysroot() {
  local root="${1:-${VLLM_STACK_AARCH64_SYSROOT:-/opt/vllm-stack/aarch64-sysroot}}"
  local packages=(libc6 libgcc-s1 libstdc++6 libgomp1 zlib1g libexpat1 libffi8
                  python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
  if [ -x "$root/usr/bin/python3.11" ] && [ -e "$root/lib/ld-linux-aarch64.so.1" ]; then
    echo "aarch64 sysroot: $root (present)"
    return 0
  fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -q >/dev/null
  local debs
  debs="$(mktemp -d)"
  (cd "$debs" && apt-get download -q "${packages[@]/%/:arm64}" >/dev/null 2>&1)
  mkdir -p "$root"
  local deb
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
  rm -rf "$debs"
  echo "aarch64 sysroot: $root ($("$root/usr/bin/python3.11" --version 2>/dev/null || echo 'Python 3.11, runs under qemu-aarch64'))"
}
aarch64_sysroot "$@"
