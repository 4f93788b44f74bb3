"""xformers' memory-efficient attention against torch's scaled_dot_product_attention (run on the H200)."""

import json
import sys

import torch
import torch.nn.functional as F

import xformers
import xformers.ops as xops

torch.manual_seed(0)
results = {"xformers": xformers.__version__, "file": xformers.__file__}
ok = True
for dtype, tol in ((torch.bfloat16, 2e-2), (torch.float16, 5e-3)):
    q, k, v = (torch.randn(2, 1024, 8, 128, device="cuda", dtype=dtype) for _ in range(3))
    out = xops.memory_efficient_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    err = (out.float() - ref.float()).abs().max().item()
    passed = err < tol
    ok &= passed
    results[str(dtype).replace("torch.", "")] = {"max_abs_err": err, "passed": passed}
results["ok"] = ok
print(json.dumps(results, indent=2))
sys.exit(0 if ok else 1)
