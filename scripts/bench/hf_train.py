"""The transformers + PEFT side of scripts/bench-train and scripts/gpu/bench: same model, LoRA r/alpha on all linear
projections, batch and sequence length, random tokens with every position trained, AdamW with clipping; prints tokens/s
and peak GPU memory (NVML, device-wide, as gpud-bench measures it; torch's max_memory_allocated beside it)."""
import argparse
import os
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import GpuMemoryPeak, dtype_of, load  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default=None)
p.add_argument("--gradient-checkpointing", action="store_true")
a, _ = p.parse_known_args()
cuda = a.device.startswith("cuda")
memory = GpuMemoryPeak(a.device)
model = load(a.model, dtype_of(a.dtype, a.device), a.device)
if a.gradient_checkpointing:
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules="all-linear", lora_dropout=0.0))
for n, param in model.named_parameters():
    if "lora_" in n:
        param.data = param.data.float()  # adapter weights and optimizer state in f32, as gpud keeps them
trainable = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)
g = torch.Generator().manual_seed(1234)
times = []
for step in range(a.steps + 1):
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), generator=g).to(a.device)
    if cuda:
        torch.cuda.synchronize()
    s = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad()
    if cuda:
        torch.cuda.synchronize()
    times.append(time.perf_counter() - s)
per_step = sum(times[1:]) / len(times[1:])
memory.close()
print(f"train_tokens_per_second={a.batch * a.seq / per_step:.1f}")
print(f"step_seconds={per_step:.3f}")
print(f"peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
if memory.peak is not None:
    print(f"peak_gpu_memory_mib={memory.peak / 2**20:.0f}")
if cuda:
    print(f"torch_max_allocated_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}")
