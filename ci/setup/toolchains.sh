# Sourced by .ci/run as root (set -euo pipefail in effect): make Debian's Nix usable
# for tests/test_toolchains.py.  Idempotent.
#
# Single-user Nix as root: the store is /nix, created on first use.  The tests
# themselves set NIX_CONFIG="sandbox = false / build-users-group =" (their stand-in
# derivations run the host's /bin/sh), so no nixbld users or nix-daemon are needed.
# Here we only check that nix runs and that /nix can be created.
if command -v nix >/dev/null 2>&1; then
  mkdir -p /nix
  nix --version
else
  echo "ci/setup/toolchains.sh: nix not installed (ci/apt/toolchains.txt lists nix-bin)" >&2
fi
