"""GPU check of the fixture torch extension built by the pipeline (tests/fixtures/gpu_extension)."""

import json
import sys

import torch

import gpu_ext_fixture

torch.manual_seed(0)
x = torch.randn(1 << 20, device="cuda")
y = torch.randn(1 << 20, device="cuda")
expected = 2.5 * x + y
torch.ops.gpu_ext_fixture.saxpy(2.5, x, y)
saxpy_err = (y - expected).abs().max().item()

m = torch.randn(512, 1000, device="cuda")
soft = torch.ops.gpu_ext_fixture.softmax_rows(m)
soft_err = (soft - torch.softmax(m, dim=1)).abs().max().item()

ok = saxpy_err < 1e-5 and soft_err < 1e-5
print(json.dumps({"module": gpu_ext_fixture.__file__, "saxpy_max_abs_err": saxpy_err,
                  "softmax_max_abs_err": soft_err, "ok": ok}, indent=2))
sys.exit(0 if ok else 1)
