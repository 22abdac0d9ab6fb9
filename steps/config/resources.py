"""params.yaml's `resources:` section: how many processes train a stage, and in which float precision.

The defaults are today's run (one process, fp32), bit for bit. More than one process applies to the stages that
train (teacher, distill, and prune's fine-tuning after each round): the stage starts itself under torchrun
(steps/core/launch.py) and trains with DistributedDataParallel on the same global batch
(steps/compression/parallel.py). Prune's budget search (`target:`) and the other stages run as one process whatever
this says.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.config.base import Section as _Section

PRECISIONS = ("fp32", "bf16", "fp16")


class ResourcesConfig(_Section):
    processes: int = Field(default=1, ge=1, description="processes per machine that train teacher, distill or "
                           "prune's fine-tuning (torchrun's --nproc-per-node); the global batch stays the stage's "
                           "batch_size")
    nodes: int = Field(default=1, ge=1, description="machines; above 1 a cluster scheduler starts torchrun "
                       "--nnodes on each, the stage does not")
    backend: Literal["gloo", "nccl"] = Field(default="gloo", description="torch.distributed's backend: gloo on "
                                             "CPU, nccl between CUDA devices")
    precision: Literal[PRECISIONS] = Field(default="fp32", description="training's float precision: bf16 autocasts "
                                           "the forward pass; fp16 (CUDA only) adds a gradient scaler")

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes


def check_device(resources: ResourcesConfig, device: str) -> None:
    """What a CPU cannot do, refused naming the key: fp16 (no gradient scaler on CPU) and nccl (CUDA only).
    `device` is params' device, or the device `auto` resolved to."""
    if device != "cpu":
        return
    if resources.precision == "fp16":
        raise ValueError("resources.precision fp16 needs a CUDA device (device is cpu): use bf16 or fp32 on CPU")
    if resources.backend == "nccl":
        raise ValueError("resources.backend nccl needs CUDA devices (device is cpu): use gloo on CPU")
