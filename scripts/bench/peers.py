"""Shared helpers of the Python peers (transformers, PEFT): loading a model directory the same way in every
transformers version, and the device's peak memory as NVML sees it, measured exactly as gpud-bench measures gpud's."""
import threading
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def load(path, dtype, device):
    # transformers 4.56 renamed torch_dtype to dtype; older versions would silently ignore the new name.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **{key: dtype}).to(device)


def dtype_of(name, device):
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[
        name or ("bfloat16" if device.startswith("cuda") else "float32")]


class GpuMemoryPeak:
    """Device-wide used memory (all processes, CUDA context and allocator cache), sampled every 2 ms."""

    def __init__(self, device):
        self.peak = None
        self._stop = False
        if not device.startswith("cuda"):
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            index = int(device.split(":")[1]) if ":" in device else 0
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception:  # no NVML: report torch's own figure only
            return
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self.peak = max(self.peak, used)
            time.sleep(0.002)

    def close(self):
        self._stop = True
        if self.peak is not None:
            self._thread.join()
