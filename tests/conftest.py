import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def run_backend(tmp_path):
    """Run `python -m backend ...` as a user would, from the project root."""
    import subprocess

    def run(*args, cwd=ROOT, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("VLLM_STACK_CACHE_DIR", str(tmp_path / "cache"))
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "backend", *args], cwd=cwd, capture_output=True, text=True, env=full_env)

    return run
