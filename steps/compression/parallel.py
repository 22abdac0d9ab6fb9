"""Training on several processes with torch.distributed: which rank this is, its shard of a batch, DDP.

One process (no process group) is the default and changes nothing: world_size() is 1, shard() returns the
batch itself, and train_epochs runs exactly the ops it always ran. Under torchrun (steps/core/launch.py starts
it) every rank draws the same seeded permutation and takes its contiguous slice of each global batch, so the
samples of a global step are those of one process; the rank's loss is weighted by its share of the batch, so
DDP's mean of the ranks' gradients is the gradient of the global batch's mean loss, at the same learning rate.
Not a DistributedSampler: it pads the epoch with repeated samples and shuffles per rank, which one process does
not do. On CUDA, BatchNorm layers are SyncBatchNorm while DDP trains (their statistics those of the global batch,
as in one process) and are BatchNorm again afterwards; on CPU torch's SyncBatchNorm refuses to run (it syncs
GPU tensors only), so there BatchNorm's statistics are the rank's shard's. The terms of a loss that
average over a padded text's real tokens, not its rows, are weighted by the rank's share of the batch's tokens
(token_weight; training.TokenMean), so padding that falls unevenly on the ranks changes nothing. Validation is
split too: every rank takes rank 0's buffers (broadcast_buffers), scores its contiguous part of the split (my_rows),
and the counts and loss sums are added up (all_reduce_sums): one process's counts, and its loss sum but for the
order of additions.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import torch
from torch import distributed as dist
from torch import nn

from steps.compression import choices, torchrun_env


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0, the one rank that writes checkpoints, metrics files, the MLflow run and DVC records."""
    return rank() == 0


def barrier() -> None:
    """Every rank waits here for the others (none exits while rank 0 still writes)."""
    if active():
        dist.barrier()


def all_reduce_sum(value: float) -> float:
    """The sum of `value` over the ranks (float64, so the order of a few additions barely matters)."""
    return all_reduce_sums(value)[0]


COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
"""How long a rank waits in a collective for the others (rank 0's logging, saving and artifact uploads included)."""


@contextlib.contextmanager
def process_group(backend: str, device: torch.device) -> Iterator[None]:
    """The process group of torchrun's ranks for the duration (destroyed after, on success or failure); nothing
    for a process torchrun did not start (torchrun_env.inside_torchrun, the launcher's test too). On a CUDA
    `device` (the stage's, `auto` resolved) each rank is bound to its own GPU first, whatever the backend."""
    if not torchrun_env.inside_torchrun() or active():
        yield
        return
    if device.type == "cuda":  # device "cuda" is then the rank's GPU (NCCL refuses two ranks on one; gloo would
        _bind_gpu(torchrun_env.local_rank())  # put every rank on GPU 0)
    # Ranks wait in a collective while rank 0 alone logs and saves: NCCL's default of 10 minutes would kill a job
    # whose checkpoint or artifact upload takes longer.
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _bind_gpu(local_rank: int) -> None:
    """This rank on GPU `local_rank` of its machine; refused, naming the key, on a machine with fewer GPUs than
    processes (CUDA's own "invalid device ordinal" names none)."""
    gpus = torch.cuda.device_count()
    if local_rank >= gpus:
        raise ValueError(f"resources.processes: local rank {local_rank} needs GPU {local_rank}, and this machine has "
                         f"{gpus} visible: one process per GPU on CUDA (set resources.processes to {gpus} or fewer)")
    torch.cuda.set_device(local_rank)


def shard(idx: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """(this rank's rows of the global batch `idx`, the weight of its mean loss, how many rows it holds).

    Weight = rows * world / len(idx): DDP averages the ranks' gradients, so the weighted means add up to the
    global batch's mean even when a last batch splits unevenly. A rank left without rows (a last batch smaller
    than the world) runs one row at weight 0, because every rank must join the gradient all-reduce."""
    world = world_size()
    if world == 1:
        return idx, 1.0, len(idx)
    mine = idx.tensor_split(world)[rank()]
    if len(mine) == 0:
        return idx[:1], 0.0, 0
    return mine, len(mine) * world / len(idx), len(mine)


class RankTraining:
    """What DDP (Replicas) and FSDP (sharded.Sharded) share: dropout drawn per rank, and the optimizer's parameters
    outside the model (a distillation objective's regressors), which neither wraps, averaged by hand."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if rank() > 0:  # dropout's masks: every rank was seeded alike, and would drop the same units of its rows
            torch.manual_seed(torch.initial_seed() + rank())
        own = {id(p) for p in model.parameters()}
        self.others = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]

    def average_others(self) -> None:
        """The others' gradients averaged over the ranks (DDP and FSDP average the model's themselves)."""
        world = world_size()
        for p in self.others:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(world)


class Replicas(RankTraining):
    """`model` wrapped in DistributedDataParallel (its gradients averaged during backward), and the optimizer's
    other parameters averaged by hand after it (RankTraining). On CUDA its BatchNorm layers are SyncBatchNorm until
    `close()` puts the BatchNorm layers back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(model, optimizer)
        on_cuda = next(model.parameters()).device.type == "cuda"
        self.swapped = sync_batchnorm(model) if on_cuda else []
        self.model = nn.parallel.DistributedDataParallel(model)

    def gather(self) -> None:
        """Nothing: DDP trains the model itself (sharded.Sharded gathers its copy's weights into the model here)."""

    def close(self) -> None:
        """The model's own BatchNorm layers back, with what training left in them (saved, pruned, exported)."""
        local_batchnorm(self.swapped)
        self.swapped = []


@contextlib.contextmanager
def replicated(model: nn.Module, optimizer: torch.optim.Optimizer,
               strategy: str = "ddp") -> Iterator[Replicas | None]:
    """What the ranks train for the duration, by `strategy` (resources.strategy, choices.STRATEGIES): `model` in DDP
    (Replicas) or a sharded copy (sharded.Sharded), each with `.model`, `average_others()`, `gather()`, and
    `close()` on success or failure (BatchNorm layers back; fsdp: the optimizer's own groups back). None with one
    process, which trains `model` itself."""
    if world_size() == 1:
        yield None
        return
    replicas = choices.STRATEGIES.resolve(strategy)(model, optimizer)
    try:
        yield replicas
    finally:
        replicas.close()


Swapped = list[tuple[nn.Module, str, nn.Module]]
"""(parent, attribute name, the BatchNorm layer that was there) for each layer sync_batchnorm replaced."""


def sync_batchnorm(model: nn.Module) -> Swapped:
    """Every BatchNorm layer inside `model` replaced, in place, by a SyncBatchNorm holding the same Parameter and
    buffer objects (nn.SyncBatchNorm.convert_sync_batchnorm assigns them, so the optimizer still updates the
    weights the model holds); what local_batchnorm needs to put them back. Not a bare BatchNorm `model` itself
    (it has no parent to hold its replacement): that stays as it is."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm)]
    synced: dict[int, nn.Module] = {}  # a layer used at two places stays one layer
    for parent, name, child in found:
        if id(child) not in synced:
            synced[id(child)] = nn.SyncBatchNorm.convert_sync_batchnorm(child)
        setattr(parent, name, synced[id(child)])
    return found


def local_batchnorm(swapped: Swapped) -> None:
    """The BatchNorm layers sync_batchnorm replaced, back in their places with the SyncBatchNorm's state (the
    same tensors unless something reassigned one) and training mode: the spec, checkpoint and pruning code see
    the model's own layer types."""
    for parent, name, original in swapped:
        synced = getattr(parent, name)
        original.load_state_dict(synced.state_dict())
        original.train(synced.training)
        setattr(parent, name, original)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (its layers by their own names, as feature taps name them)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def my_rows(n: int) -> slice:
    """This rank's contiguous part of `n` rows (the first n % world ranks hold one more), as shard() splits a batch:
    the rows a rank scores of a validation split, whose sums all_reduce_sums then adds up. All of them on one
    process; none on a rank beyond the n-th."""
    world, me = world_size(), rank()
    per, extra = divmod(n, world)
    start = me * per + min(me, extra)
    return slice(start, start + per + (me < extra))


def all_reduce_sums(*values: float) -> tuple[float, ...]:
    """The sums over the ranks of a few numbers at once, in one float64 all-reduce (counts stay exact below 2**53, a
    loss sum adds in another order only across ranks); the numbers themselves, untouched, with no process group."""
    if not active():
        return values
    sums = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(sums)
    return tuple(sums.tolist())


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank. DDP broadcasts them at the start of each
    training forward, after which each rank updates them from its own shard: without this, ranks that score their
    parts of a validation split would each use slightly different statistics, none of them the saved model's.
    A strided view (a constant expanded over a batch dimension) cannot be broadcast in place and is left as it is:
    statistics are whole tensors."""
    if active():
        for buffer in model.buffers():
            if buffer.is_contiguous():
                dist.broadcast(buffer, 0)


def token_weight(tokens: float, held: int) -> float:
    """The weight of this rank's mean over its own `tokens` (a text batch's real tokens, padding left out): its
    share of the global batch's tokens times the world size, as shard()'s weight is its share of the rows, so that
    DDP's mean of the ranks' gradients is the gradient of the mean over all the batch's tokens. A rank without
    rows (`held` 0, running shard()'s one row at weight 0) counts no token and weighs 0. One all-reduce."""
    world = world_size()
    if world == 1:
        return 1.0
    mine = float(tokens) if held else 0.0
    (total,) = all_reduce_sums(mine)
    return mine * world / total if total else 0.0


def _collective_device() -> str:
    return "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces CUDA tensors only
