"""The transformers side of scripts/bench-generate: same model directory, batch and lengths, greedy generate()."""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--prompt-tokens", type=int, default=128)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default=None)
p.add_argument("--repeat", type=int, default=3)
a, _ = p.parse_known_args()
dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[a.dtype or ("bfloat16" if a.device.startswith("cuda") else "float32")]
model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, attn_implementation="sdpa").to(a.device).eval()
g = torch.Generator().manual_seed(1234)
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.prompt_tokens), generator=g).to(a.device)
mask = torch.ones_like(ids)


def best(n, new):
    t = float("inf")
    for _ in range(n):
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        s = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = min(t, time.perf_counter() - s)
    return t


best(1, 1)
prefill = best(a.repeat, 1)
full = best(a.repeat, a.new_tokens)
print(f"prefill_tokens_per_second={a.batch * a.prompt_tokens / prefill:.1f}")
print(f"decode_tokens_per_second={a.batch * (a.new_tokens - 1) / max(full - prefill, 1e-9):.1f}")
print(f"generate_seconds={full:.3f}")
