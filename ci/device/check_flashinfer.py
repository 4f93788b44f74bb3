"""flashinfer's decode attention against a float32 reference (run on the H200).

``single_decode_with_kv_cache`` JIT-compiles its kernel at the first call
(flashinfer-python from the lock carries no AOT kernels), so the machine
needs nvcc; the reference is plain softmax(q k^T / sqrt(d)) v in float32.
"""

import json
import math
import sys
import time

import torch

import flashinfer

torch.manual_seed(0)
results = {"flashinfer": flashinfer.__version__, "file": flashinfer.__file__}
ok = True
for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)):
    num_qo_heads, num_kv_heads, head_dim, kv_len = 32, 8, 128, 2048
    q = torch.randn(num_qo_heads, head_dim, device="cuda", dtype=dtype)
    k = torch.randn(kv_len, num_kv_heads, head_dim, device="cuda", dtype=dtype)
    v = torch.randn(kv_len, num_kv_heads, head_dim, device="cuda", dtype=dtype)
    started = time.monotonic()
    out = flashinfer.single_decode_with_kv_cache(q, k, v)
    torch.cuda.synchronize()
    first_call = time.monotonic() - started
    group = num_qo_heads // num_kv_heads
    kf = k.float().repeat_interleave(group, dim=1)  # [kv_len, qo_heads, d]
    vf = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("hd,nhd->hn", q.float(), kf) / math.sqrt(head_dim)
    ref = torch.einsum("hn,nhd->hd", scores.softmax(dim=-1), vf)
    err = (out.float() - ref).abs().max().item()
    passed = err < tol
    ok &= passed
    results[str(dtype).replace("torch.", "")] = {"max_abs_err": err, "bound": tol, "passed": passed,
                                                  "first_call_s": round(first_call, 1)}
results["ok"] = ok
print(json.dumps(results, indent=2))
sys.exit(0 if ok else 1)
