"""Training's float precision (params' resources.precision): fp32 as always, bf16 autocast, fp16 with a scaler.

fp32 runs exactly the ops training always ran (no autocast context, plain backward and step). bf16 autocasts
the forward pass on the model's device (CPU or CUDA; weights and the optimizer stay fp32). fp16 autocasts on
CUDA and scales the loss so small gradients do not underflow (torch.amp.GradScaler); it is refused on CPU.
Evaluation stays fp32.
"""

from __future__ import annotations

import contextlib

import torch


class Precision:
    def __init__(self, name: str, device: torch.device) -> None:
        if name == "fp16" and device.type != "cuda":
            raise ValueError(f"resources.precision fp16 needs a CUDA device (training runs on {device.type}): "
                             "use bf16 or fp32")
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
