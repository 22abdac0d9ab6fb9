"""params.yaml's `resources:` section: how many processes train a stage, how they share it, and in which float
precision.

The defaults are today's run (one process, fp32), bit for bit. More than one process applies to the stages that
train (teacher, distill, and prune's fine-tuning after each round): the stage starts itself under torchrun
(steps/core/launch.py) and trains with DistributedDataParallel on the same global batch
(steps/compression/parallel.py), or for teacher and distill with `strategy: fsdp` on shards of the model
(steps/compression/sharded.py). Prune's budget search (`target:`) and the other stages run as one process whatever
this says.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice

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
    strategy: choice(choices.STRATEGIES) = Field(
        default="ddp", description="how several processes share the training: ddp, each a whole replica of the "
        "model; fsdp, each a shard of its weights, gradients and optimizer state (for a model whose training "
        "state does not fit one device); unused on one process")

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    def unused(self) -> tuple[str, ...]:
        """One process trains the model itself, whatever the strategy: none of its code runs."""
        return () if self.world_size > 1 else ("strategy",)

    @model_validator(mode="after")
    def _fsdp_scales_no_fp16(self) -> ResourcesConfig:
        """fp16's gradient scaler would find an overflow in some ranks' shards and not others', and skip the step on
        those ranks only (torch's ShardedGradScaler agrees across ranks; not wired here)."""
        if self.world_size > 1 and self.strategy == "fsdp" and self.precision == "fp16":
            raise ValueError("resources.strategy fsdp with resources.precision fp16: the gradient scaler would skip "
                             "a step on some ranks only; use bf16 (or strategy ddp)")
        return self


def check_strategy(resources: ResourcesConfig, l1_coefficient: float) -> None:
    """What fsdp cannot train, refused naming the keys: the teacher's L1 penalty reads the weights outside the
    forward pass, where fsdp holds them as shards (the sum would mix shards and whole tensors)."""
    if resources.world_size > 1 and resources.strategy == "fsdp" and l1_coefficient > 0:
        raise ValueError(f"resources.strategy fsdp cannot add teacher.train.l1 (coefficient {l1_coefficient}): its "
                         "penalty reads the weights outside the forward pass, where fsdp holds only shards; set "
                         "teacher.train.l1.coefficient: 0 or resources.strategy: ddp")


def check_device(resources: ResourcesConfig, device: str) -> None:
    """What a CPU cannot do, refused naming the key: fp16 (no gradient scaler on CPU) and nccl (CUDA only).
    `device` is params' device, or the device `auto` resolved to."""
    if device != "cpu":
        return
    if resources.precision == "fp16":
        raise ValueError("resources.precision fp16 needs a CUDA device (device is cpu): use bf16 or fp32 on CPU")
    if resources.backend == "nccl":
        raise ValueError("resources.backend nccl needs CUDA devices (device is cpu): use gloo on CPU")
