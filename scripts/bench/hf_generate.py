"""The transformers side of scripts/bench-generate and scripts/gpu/bench: same model directory, batch and lengths,
greedy generate() with exactly new_tokens tokens; prints prefill and decode tokens/s and peak GPU memory (NVML)."""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import GpuMemoryPeak, dtype_of, load  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--prompt-tokens", type=int, default=128)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default=None)
p.add_argument("--repeat", type=int, default=3)
a, _ = p.parse_known_args()
cuda = a.device.startswith("cuda")
memory = GpuMemoryPeak(a.device)
model = load(a.model, dtype_of(a.dtype, a.device), a.device).eval()
g = torch.Generator().manual_seed(1234)
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.prompt_tokens), generator=g).to(a.device)
mask = torch.ones_like(ids)


def best(n, new):
    t = float("inf")
    for _ in range(n):
        if cuda:
            torch.cuda.synchronize()
        s = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        if cuda:
            torch.cuda.synchronize()
        t = min(t, time.perf_counter() - s)
    return t


best(1, 1)
prefill = best(a.repeat, 1)
full = best(a.repeat, a.new_tokens)
memory.close()
print(f"prefill_tokens_per_second={a.batch * a.prompt_tokens / prefill:.1f}")
print(f"decode_tokens_per_second={a.batch * (a.new_tokens - 1) / max(full - prefill, 1e-9):.1f}")
print(f"generate_seconds={full:.3f}")
if memory.peak is not None:
    print(f"peak_gpu_memory_mib={memory.peak / 2**20:.0f}")
