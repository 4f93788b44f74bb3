"""flashinfer called as vLLM 0.15.1 calls it, from the jit-cache wheel only, with first-call latencies.

The calls copy vLLM's (read in the 0.14.1 and 0.16.0 sdists):
- prefill: BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD").plan(..., causal=True, window_left=-1,
  logits_soft_cap=None, q_data_type=model dtype, kv_data_type=kv cache dtype) then run(q, kv_cache)
  (v1/attention/backends/flashinfer.py fast_plan/plan calls; backend "auto": FA3 on sm_90a);
- decode: BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True) (flashinfer.py:739-750
  in 0.16.0), plan(..., pos_encoding_mode="NONE", window_left=-1, q/kv data types) then run;
- sampling: flashinfer.sampling.top_k_top_p_sampling_from_logits(logits, k, p, deterministic=True) and
  top_p_sampling_from_probs (v1/sample/ops/topk_topp_sampler.py:366-377);
- rope: flashinfer.rope.apply_rope_with_cos_sin_cache_inplace (rotary_embedding/common.py:89).
Run with nvcc and ninja out of reach and an empty FLASHINFER_WORKSPACE_BASE: a kernel outside the wheel would
have to be JIT-compiled and fails instead. First call: plan + run (module load included), then a second call.
Prints one JSON object; exits 1 when a call fails or a reference check misses.
"""

import json
import os
import shutil
import sys
import time

import torch

import flashinfer
import flashinfer.rope
import flashinfer.sampling

results = {"calls": [], "ok": True, "nvcc": shutil.which("nvcc"), "ninja": shutil.which("ninja"),
           "workspace": os.environ.get("FLASHINFER_WORKSPACE_BASE")}
torch.manual_seed(0)
DEV, DT = "cuda", torch.bfloat16
HQ, HKV, D, PAGE = 32, 8, 128, 16


def timed(name, first, again, check=None):
    """first(): the first call (plan, module load, run); again(): the same once more; check(out) -> error or None."""
    entry = {"call": name}
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = first()
        torch.cuda.synchronize()
        entry["first_call_ms"] = round((time.perf_counter() - start) * 1000, 1)
        start = time.perf_counter()
        again()
        torch.cuda.synchronize()
        entry["second_call_ms"] = round((time.perf_counter() - start) * 1000, 2)
        entry["error_vs_reference"] = check(out) if check else None
        entry["ok"] = entry["error_vs_reference"] is None or entry["error_vs_reference"] < 2e-2
    except Exception as error:
        entry.update(ok=False, error=f"{type(error).__name__}: {str(error)[:400]}")
    results["calls"].append(entry)
    results["ok"] &= entry["ok"]


def reference(q, k, v, causal):
    q, k, v = q.float(), k.float(), v.float()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / D ** 0.5
    if causal:
        mask = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool, device=q.device).tril(diagonal=k.shape[0] - q.shape[0])
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


workspace = torch.empty(128 * 1024 * 1024, dtype=torch.uint8, device=DEV)
# one sequence of 512 tokens in 32 pages of 16, the HND/NHD paged layout vLLM uses (NHD: [pages, 2, page, Hkv, D])
tokens = 512
pages = tokens // PAGE
kv_cache = torch.randn(pages, 2, PAGE, HKV, D, device=DEV, dtype=DT)
k_all = kv_cache[:, 0].reshape(tokens, HKV, D)
v_all = kv_cache[:, 1].reshape(tokens, HKV, D)
kv_indptr = torch.tensor([0, pages], dtype=torch.int32, device=DEV)
kv_indices = torch.arange(pages, dtype=torch.int32, device=DEV)
last_len = torch.tensor([PAGE], dtype=torch.int32, device=DEV)

q_pre = torch.randn(tokens, HQ, D, device=DEV, dtype=DT)
qo_indptr = torch.tensor([0, tokens], dtype=torch.int32, device=DEV)
prefill = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")


def prefill_call():
    prefill.plan(qo_indptr, kv_indptr, kv_indices, last_len, HQ, HKV, D, PAGE, causal=True, sm_scale=D ** -0.5,
                 window_left=-1, logits_soft_cap=None, q_data_type=DT, kv_data_type=DT)
    return prefill.run(q_pre, kv_cache)


timed(f"BatchPrefillWithPagedKVCacheWrapper bf16 causal, {HQ}/{HKV} heads, d {D}, page {PAGE}, {tokens} tokens",
      prefill_call, prefill_call,
      lambda out: (out.float() - reference(q_pre, k_all, v_all, True)).abs().max().item())
results["prefill_backend"] = getattr(prefill, "_backend", None)

q_dec = torch.randn(1, HQ, D, device=DEV, dtype=DT)
decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True)


def decode_call():
    decode.plan(kv_indptr, kv_indices, last_len, HQ, HKV, D, PAGE, pos_encoding_mode="NONE", window_left=-1,
                logits_soft_cap=None, q_data_type=DT, kv_data_type=DT, sm_scale=D ** -0.5)
    return decode.run(q_dec, kv_cache)


timed(f"BatchDecodeWithPagedKVCacheWrapper(use_tensor_cores=True) bf16, {tokens} keys", decode_call, decode_call,
      lambda out: (out.float() - reference(q_dec, k_all, v_all, False)).abs().max().item())

logits = torch.randn(64, 32000, device=DEV, dtype=torch.float32)
top_k = torch.full((64,), 50, dtype=torch.int32, device=DEV)
top_p = torch.full((64,), 0.9, dtype=torch.float32, device=DEV)
sample = lambda: flashinfer.sampling.top_k_top_p_sampling_from_logits(logits, top_k, top_p, deterministic=True)
timed("sampling.top_k_top_p_sampling_from_logits, 64 x 32000", sample, sample,
      lambda ids: None if bool(((ids >= 0) & (ids < 32000)).all()) else 1.0)
probs = logits.softmax(-1)
sample_p = lambda: flashinfer.sampling.top_p_sampling_from_probs(probs, top_p, deterministic=True)
timed("sampling.top_p_sampling_from_probs, 64 x 32000", sample_p, sample_p)

positions = torch.arange(256, device=DEV)
query = torch.randn(256, HQ * D, device=DEV, dtype=DT)
key = torch.randn(256, HKV * D, device=DEV, dtype=DT)
inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=DEV, dtype=torch.float32) / D))
freqs = torch.outer(torch.arange(4096, device=DEV, dtype=torch.float32), inv)
cos_sin = torch.cat([freqs.cos(), freqs.sin()], dim=-1)
rope = lambda: flashinfer.rope.apply_rope_with_cos_sin_cache_inplace(positions, query, key, D, cos_sin, True)
timed("rope.apply_rope_with_cos_sin_cache_inplace, 256 tokens", rope, rope)

with open("/proc/self/maps") as maps:
    mapped = sorted({line.split()[-1] for line in maps if "flashinfer" in line and line.rstrip().endswith(".so")})
results["mapped"] = [path.split("site-packages/")[-1] for path in mapped]
results["from_jit_cache"] = [p for p in results["mapped"] if "flashinfer_jit_cache" in p]
workspace_base = os.environ.get("FLASHINFER_WORKSPACE_BASE", "")
results["jit_compiled_here"] = [str(p) for p in __import__("pathlib").Path(workspace_base).rglob("*.so")] if workspace_base else []
results["ok"] &= not results["jit_compiled_here"]
print(json.dumps(results, indent=1))
sys.exit(0 if results["ok"] else 1)
