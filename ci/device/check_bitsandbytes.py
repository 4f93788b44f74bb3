"""GPU checks of a bitsandbytes wheel built by the pipeline (run on the H200).

Thresholds are bitsandbytes 0.49.1's own (tests/test_functional.py):
test_4bit_quant (nf4, blocksize 64: mean abs error < 0.072792 + 1e-3,
mean relative error < 0.203299 + 1e-3) and test_int8_linear_matmul
(int8 x int8 -> int32 equals the float matmul exactly).
"""

import json
import sys

import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F

results = {"bitsandbytes": bnb.__version__, "file": bnb.__file__, "torch": torch.__version__,
           "device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0))}
ok = True

torch.manual_seed(0)
for dtype in (torch.bfloat16, torch.float16):
    A1 = torch.randn(4096, 4096, device="cuda", dtype=dtype)
    qa, state = F.quantize_4bit(A1, blocksize=64, quant_type="nf4")
    A2 = F.dequantize_4bit(qa, state, blocksize=64, quant_type="nf4")
    err = (A1 - A2).abs().float()
    relerr = (err / (A1.abs().float() + 1e-8)).mean().item()
    err = err.mean().item()
    passed = A2.dtype == dtype and err < 0.072792 + 1e-3 and relerr < 0.203299 + 1e-3
    ok &= passed
    results[f"nf4_{dtype}".replace("torch.", "")] = {"mean_abs_err": round(err, 6), "mean_rel_err": round(relerr, 6), "passed": passed}

for dims in (2, 3):
    A = torch.randint(-128, 127, size=(128, 512) if dims == 2 else (128, 256, 512), dtype=torch.int8, device="cuda")
    B = torch.randint(-128, 127, size=(512, 512), dtype=torch.int8, device="cuda")
    C1 = torch.matmul(A.float(), B.t().float())
    C2 = F.int8_linear_matmul(A, B)
    max_diff = (C1 - C2.float()).abs().max().item()
    passed = max_diff == 0.0
    ok &= passed
    results[f"int8_linear_matmul_{dims}d"] = {"max_abs_diff": max_diff, "passed": passed}

# Linear8bitLt (LLM.int8) against a fp16 reference: relative error of the layer output.
linear = torch.nn.Linear(1024, 1024).half().cuda()
int8 = bnb.nn.Linear8bitLt(1024, 1024, has_fp16_weights=False, threshold=0.0)
int8.load_state_dict(linear.state_dict())
int8 = int8.cuda()
x = torch.randn(64, 1024, device="cuda", dtype=torch.float16)
ref, out = linear(x).float(), int8(x).float()
rel = ((ref - out).norm() / ref.norm()).item()
passed = rel < 0.02
ok &= passed
results["linear8bitlt_vs_fp16"] = {"relative_error": round(rel, 5), "passed": passed}

results["ok"] = ok
print(json.dumps(results, indent=2))
sys.exit(0 if ok else 1)
