"""flashinfer's AOT kernels from the flashinfer-jit-cache wheel, against a float32 reference attention, on the GPU.

Run it with nvcc out of reach (PATH without CUDA's bin, CUDA_HOME pointing
nowhere) and an empty FLASHINFER_WORKSPACE_BASE: a kernel that is not in the
wheel would have to be JIT-compiled and fails instead. The shared objects
the process mapped (/proc/self/maps) show where each kernel came from.
Prints one JSON object; exits 1 when a check fails.
"""

import json
import os
import sys
from pathlib import Path

import torch

import flashinfer
import flashinfer_jit_cache

results = {"checks": [], "ok": True}
torch.manual_seed(0)
HEADS_QO, HEADS_KV, DIM = 32, 8, 128


def reference(q, k, v, causal):
    """float32 attention, GQA by repeating the kv heads; q [qo, Hq, D], k/v [kv, Hkv, D]; causal: bottom-right."""
    q, k, v = q.float(), k.float(), v.float()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / DIM ** 0.5
    if causal:
        qo, kv = q.shape[0], k.shape[0]
        mask = torch.ones(qo, kv, dtype=torch.bool, device=q.device).tril(diagonal=kv - qo)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


def check(name, run, ref, bound):
    try:
        out = run()
        torch.cuda.synchronize()
        err = (out.float() - ref).abs().max().item()
        ok = err < bound
        results["checks"].append({"check": name, "max_abs_err": err, "bound": bound, "ok": ok})
    except Exception as error:  # report every check, not only the first failure
        ok = False
        results["checks"].append({"check": name, "error": f"{type(error).__name__}: {str(error)[:400]}", "ok": False})
    results["ok"] &= ok


dev, f16 = "cuda", torch.float16
q1 = torch.randn(HEADS_QO, DIM, device=dev, dtype=f16)
k1 = torch.randn(2048, HEADS_KV, DIM, device=dev, dtype=f16)
v1 = torch.randn(2048, HEADS_KV, DIM, device=dev, dtype=f16)
check("single_decode_with_kv_cache fp16 (FA2 decode), 32 qo / 8 kv heads, d 128, 2048 keys",
      lambda: flashinfer.single_decode_with_kv_cache(q1, k1, v1),
      reference(q1[None], k1, v1, causal=False)[0], 2e-3)

q = torch.randn(512, HEADS_QO, DIM, device=dev, dtype=f16)
k = torch.randn(512, HEADS_KV, DIM, device=dev, dtype=f16)
v = torch.randn(512, HEADS_KV, DIM, device=dev, dtype=f16)
ref = reference(q, k, v, causal=True)
check("single_prefill_with_kv_cache fp16 causal, backend fa2, 512 x 512",
      lambda: flashinfer.single_prefill_with_kv_cache(q, k, v, causal=True, backend="fa2"), ref, 1e-2)


def fa3_ragged():
    workspace = torch.empty(128 * 1024 * 1024, dtype=torch.uint8, device=dev)
    wrapper = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace, kv_layout="NHD", backend="fa3")
    indptr = torch.tensor([0, 512], dtype=torch.int32, device=dev)
    wrapper.plan(indptr, indptr, HEADS_QO, HEADS_KV, DIM, causal=True, q_data_type=f16, kv_data_type=f16)
    return wrapper.run(q, k, v)


check("BatchPrefillWithRaggedKVCacheWrapper fp16 causal, backend fa3 (sm90 kernels), 512 x 512", fa3_ragged, ref, 1e-2)

cache_root = Path(flashinfer_jit_cache.__file__).parent
mapped = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                 if line.split()[-1].endswith(".so") and "jit_cache" in line})
workspace_base = Path(os.environ.get("FLASHINFER_WORKSPACE_BASE", "/nonexistent"))
compiled_here = sorted(str(p) for p in workspace_base.rglob("*.so")) if workspace_base.is_dir() else []
results.update({
    "flashinfer": flashinfer.__version__,
    "jit_cache_dir": str(cache_root),
    "modules_in_wheel": sorted(p.name for p in (cache_root / "jit_cache").iterdir()) if (cache_root / "jit_cache").is_dir() else [],
    "loaded_from_jit_cache": [str(Path(p).relative_to(cache_root)) if p.startswith(str(cache_root)) else p for p in mapped],
    "jit_compiled_here": compiled_here,
    "nvcc_reachable": any((Path(d) / "nvcc").exists() for d in os.environ.get("PATH", "").split(":") if d),
})
results["ok"] &= not compiled_here and all(p.startswith(str(cache_root)) for p in mapped) and len(mapped) >= 3
print(json.dumps(results, indent=1))
sys.exit(0 if results["ok"] else 1)
