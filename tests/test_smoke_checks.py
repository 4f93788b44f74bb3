"""The smoke check runs each recipe's snippet as a file.

Found on the H200: torch's GPU snippet defines a ``@triton.jit`` kernel, and
Triton reads a kernel's source with ``inspect.getsource``, which fails for
code given with ``python -c`` ("@jit functions should be defined in a Python
file").  A snippet that needs its own source stands in for it here.
"""

from __future__ import annotations

from conftest import make_wheel

from backend.verify import smoke

NEEDS_ITS_SOURCE = (
    "import inspect\n"
    "def kernel():\n"
    "    return 1\n"
    "print(inspect.getsource(kernel).splitlines()[0])\n"
)


def test_a_check_that_reads_its_own_source_runs(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheel = make_wheel(house, "demo", "1.0")
    said = []
    result = smoke.run(house, [wheel], [], [("demo (CPU)", NEEDS_ITS_SOURCE)], work=tmp_path / "smoke",
                       no_index=True, say=said.append)
    assert result.ok, result.problems
    assert "   smoke | demo (CPU): def kernel():" in said
