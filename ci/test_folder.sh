# Sourced first by .ci/run: everything the test run writes outside the checkout goes under one folder,
# $VLLM_STACK_TEST_DIR (default: ${TMPDIR:-/tmp}/vllm-stack-tests; README, "Tests"), and a run removes it
# at its end.  Set VLLM_STACK_TEST_DIR yourself to keep it between runs (the torch venv of
# tests/test_frontends.py, the pip, uv and compiler caches): then it stays.
#
# XDG_CACHE_HOME moves pip's, uv's, ccache's, sccache's, Nix's and platformdirs' caches
# (~/.cache/vllm-stack-tests), TMPDIR pytest's temporary folders and every tempfile.
if [ -n "${VLLM_STACK_TEST_DIR:-}" ]; then
  vllm_stack_test_dir_kept=1
else
  vllm_stack_test_dir_kept=0
  VLLM_STACK_TEST_DIR="${TMPDIR:-/tmp}/vllm-stack-tests"
fi
export VLLM_STACK_TEST_DIR
mkdir -p "$VLLM_STACK_TEST_DIR/cache" "$VLLM_STACK_TEST_DIR/tmp"
export XDG_CACHE_HOME="$VLLM_STACK_TEST_DIR/cache"
export TMPDIR="$VLLM_STACK_TEST_DIR/tmp"
vllm_stack_test_dir_cleanup() {
  if [ "$vllm_stack_test_dir_kept" = 0 ]; then
    # Read-only files of pip's and Nix's trees: make them writable first, so nothing is left behind.
    chmod -R u+w "$VLLM_STACK_TEST_DIR" 2>/dev/null || true
    rm -rf "$VLLM_STACK_TEST_DIR"
    echo "== removed $VLLM_STACK_TEST_DIR (the test run's caches and temporary files)"
  else
    echo "== kept $VLLM_STACK_TEST_DIR (VLLM_STACK_TEST_DIR was set)"
  fi
}
trap vllm_stack_test_dir_cleanup EXIT
echo "== test caches and temporary files: $VLLM_STACK_TEST_DIR"
