"""FSDP (resources.strategy: fsdp): each of N ranks holds 1/N of the trained model's weights, gradients and
AdamW moments (torch's fully_shard, FSDP2), where DDP (parallel.Replicas) holds all of them on every rank.

Memory per rank, in units of the model's weights: DDP trains with weights + gradients + AdamW's two moments = 4x
(plus DDP's gradient buckets). Sharded trains with the plain model (1x: the one validation, saving and export see)
plus the sharded copy's weights, gradients and moments over N (4x/N), plus, for the duration of one block's forward
and backward, that block's gathered weights and gradients (and those of the parameters outside every block: the
root's, such as embeddings and the head). So it fits a model whose weights fit one device but whose training
state does not (2 ranks: 3x instead of 4x; 8 ranks: 1.5x). The model is still built and loaded whole on every
rank before it is sharded: a model whose weights alone do not fit one device would need meta-device
initialisation and sharded checkpoint loading, which this does not do.

The copy is made without a second whole copy of the weights: its parameters are created on the meta device, sharded,
then given storage for their own shard only, which is filled from the plain model's rows (`_fill`). Each step trains
the copy; `gather()` writes its weights back into the plain model (a collective: every rank calls it), after every
epoch, so validation, saving on rank 0 and ONNX export see an ordinary nn.Module. The sharding units (`units`) are
a Hugging Face model's `_no_split_modules` layers (LlamaDecoderLayer, BertLayer, ...) and, for the other families,
the layers under the root with parameters, Sequential, ModuleList and ModuleDict containers opened; then the root,
which holds whatever is left. A unit whose parameter is also used outside it (tied weights) is left to the root.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from steps.compression import parallel, progress

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
"""Modules that only hold layers: their layers are the units (a ModuleList has no forward of its own to shard)."""


class Sharded(parallel.RankTraining):
    """A sharded copy of `model` (`.model`, the module to train) and `optimizer` retargeted to it in place: its
    groups hold the copy's sharded parameters instead of `model`'s, split from the optimizer's other parameters (a
    distillation objective's regressors, kept whole and averaged by hand: RankTraining) because the fused AdamW
    kernel takes sharded and whole tensors in separate calls only. Build it before a learning-rate scheduler (which
    counts the groups), from an optimizer that has not stepped; `close()` gives the optimizer its own groups back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if optimizer.state:
            raise ValueError("fsdp (resources.strategy) shards a fresh optimizer: this one has already stepped")
        super().__init__(model, optimizer)
        self.plain, self.optimizer = model, optimizer
        self.model = shard_copy(model)
        self.pairs = _pairs(self.model, model)
        self.groups = optimizer.param_groups
        optimizer.param_groups = retargeted(optimizer.param_groups, {id(p): s for s, p in self.pairs})

    @torch.no_grad()
    def gather(self) -> None:
        """The copy's weights written into the plain model, one parameter gathered at a time, and its buffers
        (BatchNorm's running statistics, each rank's own shards'), which train_epochs then makes rank 0's on every
        rank (parallel.broadcast_buffers), as after DDP. A collective: every rank calls it, at the same point."""
        for sharded, plain in self.pairs:
            plain.copy_(sharded.full_tensor() if isinstance(sharded, DTensor) else sharded)
        for copied, plain in _buffer_pairs(self.model, self.plain):
            plain.copy_(copied)

    def close(self) -> None:
        """The optimizer's own groups back (holding the plain model's parameters), without the sharded parameters'
        moments: a caller that stepped it again would start them afresh. The copy goes with this object."""
        for sharded, _ in self.pairs:
            self.optimizer.state.pop(sharded, None)
        self.optimizer.param_groups = self.groups


def shard_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with its units and root sharded over the ranks, its weights and buffers `model`'s."""
    device = next(model.parameters()).device
    meta = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    shell = copy.deepcopy(model, meta)  # the buffers copied, the parameters shapes only
    mesh = init_device_mesh(device.type, (parallel.world_size(),))
    chosen = units(shell)
    if parallel.is_main():  # named before fully_shard renames their classes (FSDPLlamaDecoderLayer)
        progress.logger.info(f"fsdp: {type(model).__name__} sharded over {parallel.world_size()} ranks: "
                             f"{_counted(chosen)} one by one, the rest with the whole model")
    for unit in chosen:
        fully_shard(unit, mesh=mesh)
    fully_shard(shell, mesh=mesh)
    shell.to_empty(device=device)  # each rank's shard, and the buffers, allocated: empty
    _fill(shell, model)
    return shell


@torch.no_grad()
def _fill(shell: nn.Module, model: nn.Module) -> None:
    """Each sharded parameter's local rows are this rank's chunk of `model`'s (fully_shard splits dim 0 as
    torch.chunk does: a rank past the last chunk holds none); the buffers are copied whole."""
    rank, world = parallel.rank(), parallel.world_size()
    for sharded, plain in _pairs(shell, model):
        chunks = plain.detach().chunk(world)
        if rank < len(chunks):
            sharded.to_local().copy_(chunks[rank])
    for copied, plain in _buffer_pairs(shell, model):
        copied.copy_(plain)


def units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded one by one (each gathered for its own forward and backward only): a Hugging Face model's
    `_no_split_modules` classes when it names any, else the layers under the root with parameters, containers
    opened; any whose parameters are also used outside it (tied) left out, to the root's unit."""
    named = dict(model.named_modules())
    declared = {name for m in model.modules() for name in (getattr(m, "_no_split_modules", None) or ())}
    if declared:
        chosen = [name for name, m in named.items() if type(m).__name__ in declared]
    else:
        chosen = list(_layers(model))
    return [named[name] for name in _outermost(chosen) if not _shares_parameters(model, name)]


def _layers(module: nn.Module, prefix: str = "") -> Iterator[str]:
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, CONTAINERS):
            yield from _layers(child, f"{path}.")
        elif any(True for _ in child.parameters()):
            yield path


def _outermost(names: list[str]) -> list[str]:
    """`names` without those inside another of them (a declared class nested in another: its outer one shards it)."""
    return [name for name in names if not any(name.startswith(f"{other}.") for other in names if other != name)]


def _shares_parameters(model: nn.Module, unit: str) -> bool:
    """Whether a parameter of the module at `unit` is also reached from outside it (tied weights)."""
    inside: dict[int, bool] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        here = name.startswith(f"{unit}.")
        inside.setdefault(id(p), here)
        if inside[id(p)] != here:
            return True
    return False


def retargeted(groups: list[dict], sharded: dict[int, torch.Tensor]) -> list[dict]:
    """Each group's parameters with the model's replaced by their sharded copies (`sharded`, by the model
    parameter's id), as one group of sharded parameters and one of the others, each with the group's settings."""
    split = []
    for group in groups:
        mine = [sharded[id(p)] for p in group["params"] if id(p) in sharded]
        theirs = [p for p in group["params"] if id(p) not in sharded]
        split += [{**group, "params": params} for params in (mine, theirs) if params]
    return split


def _counted(modules: list[nn.Module]) -> str:
    """'LlamaDecoderLayer x2, Linear x1': how many units of each class."""
    names = [type(m).__name__ for m in modules]
    return ", ".join(f"{name} x{names.count(name)}" for name in dict.fromkeys(names)) or "no layer"


def _pairs(shell: nn.Module, model: nn.Module) -> list[tuple[DTensor, nn.Parameter]]:
    """(the copy's sharded parameter, the model's) by name: fully_shard renames nothing."""
    own = dict(model.named_parameters())
    return [(sharded, own[name]) for name, sharded in shell.named_parameters()]


def _buffer_pairs(shell: nn.Module, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    own = dict(model.named_buffers())
    return [(copied, own[name]) for name, copied in shell.named_buffers()]
