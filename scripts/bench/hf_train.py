"""The transformers + PEFT side of scripts/bench-train: same model, LoRA r/alpha on all linear projections, batch and
sequence length, random tokens with every position trained, AdamW; prints tokens/s and peak GPU memory."""
import argparse
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default=None)
a, _ = p.parse_known_args()
dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[a.dtype or ("bfloat16" if a.device.startswith("cuda") else "float32")]
model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, attn_implementation="sdpa").to(a.device)
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules="all-linear", lora_dropout=0.0))
for n, param in model.named_parameters():
    if "lora_" in n:
        param.data = param.data.float()
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
g = torch.Generator().manual_seed(1234)
times = []
for step in range(a.steps + 1):
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), generator=g).to(a.device)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    s = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    times.append(time.perf_counter() - s)
per_step = sum(times[1:]) / len(times[1:])
print(f"train_tokens_per_second={a.batch * a.seq / per_step:.1f}")
print(f"step_seconds={per_step:.3f}")
if a.device.startswith("cuda"):
    print(f"peak_gpu_memory_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}")
