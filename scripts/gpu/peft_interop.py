"""Issue 4's interop check: adapters that gpud trains and saves load in Hugging Face PEFT and give gpud's logits.

For each model (default: the fixtures gpud-tiny, llama3-tiny and qwen2-tiny that travel in the GPU bundle),
`gpud-bench interop` trains LoRA, rsLoRA, DoRA and PiSSA adapters for a few real steps, saves each exactly as a
fine-tuning job does, and writes the logits gpud computes with it. Here transformers loads the same base,
PeftModel.from_pretrained loads each adapter directory, and the logits are compared in float32.

  python3 scripts/gpu/peft_interop.py [--gpud-bench PATH] [--models DIR,DIR] [--device cuda:0|cpu] [--out DIR]
  (scripts/gpu/run interop sets --gpud-bench from the bundle)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from peers import load  # noqa: E402

here = os.environ.get("GPUD_BIN", "")
p = argparse.ArgumentParser()
p.add_argument("--gpud-bench", default=os.path.join(here, "gpud-bench") if here else None)
p.add_argument("--models", default=None)
p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
p.add_argument("--out", default=None)
p.add_argument("--tolerance", type=float, default=1e-3)
a = p.parse_args()
if not a.gpud_bench:
    sys.exit("peft_interop: pass --gpud-bench PATH (or run it through scripts/gpu/run interop)")
fixtures = os.path.join(os.path.dirname(a.gpud_bench), "fixtures", "models")
models = a.models.split(",") if a.models else [os.path.join(fixtures, m) for m in ("gpud-tiny", "llama3-tiny", "qwen2-tiny")]
out = a.out or tempfile.mkdtemp(prefix="gpud-interop-")
failures = 0
torch.backends.cuda.matmul.allow_tf32 = False


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().cpu()


for path in models:
    name = os.path.basename(path.rstrip("/"))
    work = os.path.join(out, "interop-" + name)
    subprocess.run([a.gpud_bench, "interop", "--model", path, "--out", work, "--device", a.device], check=True)
    ids = torch.tensor(json.load(open(os.path.join(work, "input_ids.json"))), device=a.device)
    checks = [("base", None, os.path.join(work, "base_logits.safetensors"))]
    for variant in ("lora", "rslora", "dora", "pissa"):
        checks.append((variant, os.path.join(work, variant), os.path.join(work, variant, "gpud_logits.safetensors")))
    for variant, adapter, gpud_file in checks:
        base = load(path, torch.float32, a.device).eval()
        model = PeftModel.from_pretrained(base, adapter).eval() if adapter else base
        theirs = logits(model, ids)
        ours = load_file(gpud_file)["logits"]
        diff = (theirs - ours).abs().max().item()
        spread = ours.abs().max().item()
        moved = "" if adapter is None else f" adapter_effect={(ours - load_file(checks[0][2])['logits']).abs().max().item():.3g}"
        ok = diff <= a.tolerance * max(1.0, spread)
        failures += 0 if ok else 1
        print(f"interop model={name} variant={variant} max_abs_diff={diff:.3g} logit_range={spread:.3g}{moved} {'ok' if ok else 'FAIL'}", flush=True)
print("interop=ok" if failures == 0 else f"interop=failed ({failures})")
sys.exit(1 if failures else 0)
