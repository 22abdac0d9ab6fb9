"""Training's float precision (params' resources.precision): fp32 as always, bf16 autocast, fp16 with a scaler.

fp32 runs exactly the ops training always ran (no autocast context, plain backward and step). bf16 autocasts
the forward pass on the model's device (CPU or CUDA; weights and the optimizer stay fp32). fp16 autocasts on
CUDA and scales the loss so small gradients do not underflow (torch.amp.GradScaler); it is refused on CPU.
bf16 on a GPU without native bfloat16 (compute capability below 8: V100, T4) is refused too: torch would emulate
it there, slower than fp32. Evaluation stays fp32.
"""

from __future__ import annotations

import contextlib

import torch


def check(name: str, device: torch.device) -> None:
    """What `device` cannot train in, refused naming the key: fp16 off CUDA, bf16 on a GPU that only emulates it
    (torch.cuda.is_bf16_supported counts emulation unless told not to)."""
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"resources.precision fp16 needs a CUDA device (training runs on {device.type}): "
                         "use bf16 or fp32")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError("resources.precision bf16 needs a GPU with bfloat16 support (compute capability 8.0 or "
                         "newer; this one would only emulate it): use fp16 or fp32")


class Precision:
    def __init__(self, name: str, device: torch.device) -> None:
        check(name, device)
        self.name, self.device = name, device
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()
