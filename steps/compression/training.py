"""Minimal, deterministic training and evaluation loops over in-memory tensors.

Fashion-MNIST fits in memory (47 MB as float32 per 60k images), so batches are
index slices of one tensor: no DataLoader workers to fight over 2 cores.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from steps.compression import choices, parallel, progress, transfer
from steps.compression.augment import Augment
from steps.compression.precision import Precision


class TokenMean(NamedTuple):
    """A step's loss some of whose terms are means over a text batch's real tokens (padding left out), not over its
    rows: `loss` the whole loss, `per_token` the part of it that averages over the batch's `tokens` tokens (a 0-d
    tensor, the attention mask's sum). One process trains on `loss` alone; several ranks weigh `per_token` by their
    share of the global batch's tokens and the rest by their share of its rows (train_epochs), so the ranks' losses
    add up to the global batch's however its padding falls across them."""

    loss: torch.Tensor
    per_token: torch.Tensor
    tokens: torch.Tensor


StepLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor | TokenMean]
"""(model, batch indices) -> scalar loss (a mean over the batch's rows), or a TokenMean when part of it is a mean
over tokens; the caller's closure owns the data."""
Inputs = torch.Tensor | dict[str, torch.Tensor]
"""A model's input rows: one tensor (images, feature vectors), or named tensors of as many rows, passed as
keyword arguments (a text model's input_ids and attention_mask)."""

LR_SCHEDULES = choices.LR_SCHEDULES


@dataclass(frozen=True)
class Split:
    """Normalised images (N, C, H, W) or features (N, D) float32, or a text's named token ids and attention masks
    (N, L) int64; labels (N,) int64."""

    x: Inputs
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: torch.Tensor, device: torch.device,
              augment: Augment | None = None) -> tuple[Inputs, torch.Tensor]:
        if device.type == "cuda":  # gathered into pinned memory, copied asynchronously (transfer.py)
            x = rows(self.x, idx, transfer.pinned_rows) if augment is None else augment(self.x[idx])
            return to_device(x, device), transfer.to_cuda(transfer.pinned_rows(self.y, idx), device)
        x = rows(self.x, idx) if augment is None else augment(self.x[idx])
        return to_device(x, device), self.y[idx].to(device)


def rows(x: Inputs, idx: torch.Tensor | slice, gather: Callable | None = None) -> Inputs:
    """The rows `idx` of every tensor of `x` (by `gather(tensor, idx)` when given: into pinned memory on CUDA)."""
    if gather is not None:
        return {name: gather(t, idx) for name, t in x.items()} if isinstance(x, dict) else gather(x, idx)
    return {name: t[idx] for name, t in x.items()} if isinstance(x, dict) else x[idx]


def numpy_rows(x: Inputs, idx: torch.Tensor | slice) -> np.ndarray | dict[str, np.ndarray]:
    """The rows `idx` of `x` as NumPy arrays (by name for a text's tensors): what MLflow's dataset schema reads."""
    chosen = rows(x, idx)
    return {name: t.numpy() for name, t in chosen.items()} if isinstance(chosen, dict) else chosen.numpy()


def count(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def to_device(x: Inputs, device: torch.device) -> Inputs:
    """`x` on `device`; to a CUDA device from pinned memory without blocking (transfer.to_cuda)."""
    move = (lambda t: transfer.to_cuda(t, device)) if torch.device(device).type == "cuda" else \
        (lambda t: t.to(device))
    return {name: move(t) for name, t in x.items()} if isinstance(x, dict) else move(x)


def forward(model: nn.Module, x: Inputs) -> torch.Tensor:
    """`model` on one batch: named tensors as keyword arguments, one tensor as the argument."""
    return model(**x) if isinstance(x, dict) else model(x)


def token_mask(x: Inputs) -> torch.Tensor | None:
    """A text batch's attention mask (1 on tokens, 0 on padding); None for images and feature vectors."""
    return x.get("attention_mask") if isinstance(x, dict) else None


def seed_everything(seed: int, threads: int) -> None:
    """Same seed, data and thread count give bit-identical results on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested in params.yaml but no CUDA device is available")
    return torch.device(name)


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode under inference_mode, restoring the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 1024) -> torch.Tensor:
    device = next(model.parameters()).device
    with evaluating(model):
        return torch.cat([forward(model, to_device(rows(x, idx), device)).cpu()
                          for idx in batch_indices(count(x), batch_size, None)])


def next_token(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A language model's logits (B, T, V) on blocks (B, T) as one prediction per row and its target:
    position t predicts token t + 1 of the same block, so each block gives T - 1 (logits (B*(T-1), V), targets)."""
    return predicting(logits), tokens[:, 1:].reshape(-1)


def predicting(logits: torch.Tensor) -> torch.Tensor:
    """(B*(T-1), V): a language model's logits at the positions of a block that predict a token of it."""
    return logits[:, :-1].reshape(-1, logits.size(-1))


def is_language_model(split: Split) -> bool:
    """Blocks of token ids whose targets are the ids themselves (data.task causal_lm), not one label per row."""
    return split.y.dim() == 2


def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """The fraction of rows classified right; for a language model's blocks, of next tokens predicted right.

    Under several ranks each scores its part of the split (parallel.my_rows) and the counts are summed, so every
    rank must call it (a collective) with the plain model, never its DDP wrapper; one process scores every row."""
    if is_language_model(split):
        return next_token_accuracy(model, split)
    mine = parallel.my_rows(len(split))
    right, total = parallel.all_reduce_sums(_right(model, split, mine, batch_size), mine.stop - mine.start)
    return fraction(right, total)


def _right(model: nn.Module, split: Split, mine: slice, batch_size: int) -> int:
    """How many of the rows `mine` of `split` `model` classifies right."""
    if mine.stop == mine.start:  # a rank beyond the split's last row
        return 0
    return (predict_logits(model, rows(split.x, mine), batch_size).argmax(1) == split.y[mine]).sum().item()


def fraction(right: float, total: float) -> float:
    """right / total in float32, widened: the value the mean of float32 booleans gave (a float32 sum of 0s and 1s
    is exact below 2**24 rows, then one division by the row count), so accuracies stay the bits they were."""
    return (torch.tensor(right, dtype=torch.float32) / total).item()


LOGITS_PER_BATCH = 1 << 25
"""Logit entries one scoring batch of a language model may hold (128 MB in float32): blocks x length x vocabulary."""


def lm_batch_size(split: Split, vocabulary: int) -> int:
    """Blocks per scoring batch that keep a batch's logits (blocks x block size x vocabulary) under
    LOGITS_PER_BATCH."""
    return max(1, LOGITS_PER_BATCH // (split.y.size(1) * vocabulary))


def validation_scores(model: nn.Module, split: Split) -> dict[str, float]:
    """What an epoch's line and MLflow show of the validation split: accuracy; for a language model also perplexity."""
    if is_language_model(split):
        return {f"val_{name}": value for name, value in next_token_scores(model, split).items()}
    return {"val_accuracy": accuracy(model, split)}


def next_token_accuracy(model: nn.Module, split: Split) -> float:
    return next_token_scores(model, split)["accuracy"]


def next_token_scores(model: nn.Module, split: Split) -> dict[str, float]:
    """A language model on `split`'s blocks: the fraction of next tokens it predicts right ("accuracy") and its
    perplexity (exp of the mean next-token loss), batch by batch (the whole split's logits would not fit).

    Under several ranks each scores its part of the blocks (parallel.my_rows) and the sums of right tokens, loss
    and tokens are added up: every rank must call it (a collective) with the plain model, never its DDP wrapper."""
    device = next(model.parameters()).device
    right = total = 0
    loss = 0.0
    mine = parallel.my_rows(len(split))
    with evaluating(model):
        vocabulary = forward(model, split.batch(torch.arange(1), device)[0]).size(-1)
        # a rank beyond the split's last block scores none (torch.arange(s, s).split gives one empty batch)
        batches = torch.arange(mine.start, mine.stop).split(lm_batch_size(split, vocabulary)) if mine.stop > mine.start \
            else ()
        for idx in batches:
            x, y = split.batch(idx, device)
            logits, targets = next_token(forward(model, x), y)
            right += (logits.argmax(-1) == targets).sum().item()
            loss += nn.functional.cross_entropy(logits.double(), targets, reduction="sum").item()
            total += targets.numel()
    right, loss, total = parallel.all_reduce_sums(right, loss, total)
    return {"accuracy": right / total, "perplexity": float(np.exp(loss / total))}


def progress_bar(show: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        transient=True,
        disable=not show or not Console(stderr=True).is_terminal,  # bars in a log file are noise
    )


EpochHook = Callable[[int, float], Mapping[str, float] | None]
"""(epoch, mean train loss) -> the metrics it measured (e.g. validation accuracy), shown in the epoch's line.
Called on every rank (validation is a collective: accuracy, validation_scores) with the plain model, never its DDP
wrapper; a hook logs on rank 0 alone (parallel.is_main())."""


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    n: int,
    batch_size: int,
    epochs: int,
    step_loss: StepLoss,
    *,
    generator: torch.Generator,
    description: str,
    on_epoch: EpochHook | None = None,
    after_step: Callable[[], None] | None = None,
    lr_schedule: str = "constant",
    precision: str = "fp32",
    strategy: str = "ddp",
) -> None:
    """Run `epochs` passes; `on_epoch(epoch, mean_loss)` after each, `after_step()` after each update.
    lr_schedule "cosine" anneals the learning rate to 0 over all steps (Loshchilov & Hutter); `precision`
    (fp32, bf16, fp16) is the forward pass's (steps/compression/precision.py); `strategy` (resources.strategy)
    how several ranks train: ddp, or fsdp (steps/compression/sharded.py: a sharded copy trains, its weights
    gathered into `model` after every epoch, before `on_epoch`).

    Each epoch ends with one progress line (`description`: epoch i/n, train loss, what `on_epoch` measured,
    seconds); on a terminal a bar shows the batches of the epoch under way.

    Under torch.distributed (steps/compression/parallel.py) every rank trains its shard of each global batch of
    `batch_size` with `model` wrapped in DDP (or sharded: `strategy`), its loss weighted by its share of the batch's
    rows (and a TokenMean's per-token part by its share of the tokens); the epoch's mean loss is summed over the
    ranks (the same mean as one process). After each epoch every rank takes rank 0's buffers (and fsdp's gathered
    weights) and calls `on_epoch` (validation is split across the ranks); the progress line is rank 0's."""
    model.train()
    batches = -(-n // batch_size)
    if after_step is not None and strategy != "ddp" and parallel.world_size() > 1:
        raise ValueError(f"resources.strategy {strategy} trains a copy of the model, and after_step (re-masking "
                         "pruned weights) acts on the model itself: use resources.strategy ddp")
    amp = Precision(precision, next(model.parameters()).device)
    main = parallel.is_main()
    with parallel.replicated(model, optimizer, strategy) as replicas:  # None with one process
        # after the strategy: fsdp regroups the optimizer's parameters, which the scheduler then holds
        scheduler = _scheduler(optimizer, lr_schedule, epochs * batches)
        trained = model if replicas is None else replicas.model
        for epoch in range(1, epochs + 1):
            began = time.perf_counter()
            total = 0.0
            # One bar per epoch, gone before the epoch's line is written: a line written under a live bar garbles it.
            with progress_bar(show=main) as bar:
                task = bar.add_task(description, total=batches, status=f"epoch {epoch}/{epochs}")
                for idx in batch_indices(n, batch_size, generator):
                    optimizer.zero_grad(set_to_none=True)
                    mine, weight, held = parallel.shard(idx)  # one process: the whole batch, weight 1
                    with amp.autocast():
                        out = step_loss(trained, mine)
                    loss, weighted, summed = _weighted(out, weight, held, len(idx))
                    amp.backward(weighted)
                    if replicas is not None:
                        replicas.average_others()
                    amp.step(optimizer)
                    scheduler.step()
                    if after_step is not None:
                        after_step()
                    total += loss.item() * held if summed is None else summed.item()
                    bar.advance(task)
            mean = parallel.all_reduce_sum(total) / n
            if replicas is not None:
                replicas.gather()  # fsdp: the epoch's weights into `model` (a collective); ddp trains `model` itself
            parallel.broadcast_buffers(model)  # rank 0's BatchNorm statistics: the model that is scored and saved
            measured = on_epoch(epoch, mean) if on_epoch is not None else None  # every rank: validation is shared
            if not main:
                continue
            progress.report(description, f"epoch {epoch}/{epochs}", {"train_loss": mean, **(measured or {})},
                            progress.since(began))


def _weighted(out: torch.Tensor | TokenMean, weight: float, held: int,
              batch_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(the step's loss, what this rank backpropagates, and, unless it is loss * held, this rank's part of the
    global batch's loss times its rows, which the epoch's sum adds up).

    A plain loss, a mean over the shard's rows, is weighted by shard()'s `weight`. A TokenMean's per-token part is
    weighted by the rank's share of the batch's tokens instead (parallel.token_weight), its other terms by rows.
    One process trains on the loss itself."""
    if isinstance(out, torch.Tensor):
        return out, out if weight == 1.0 else out * weight, None
    if parallel.world_size() == 1:
        return out.loss, out.loss, None
    tokens = parallel.token_weight(out.tokens.item(), held)
    weighted = out.loss * weight + out.per_token * (tokens - weight)
    return out.loss, weighted, weighted.detach() * (batch_rows / parallel.world_size())


def cosine_lr(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def constant_lr(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _scheduler(optimizer: torch.optim.Optimizer, name: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return LR_SCHEDULES.resolve(name)(optimizer, steps)


def cross_entropy_loss(split: Split, device: torch.device, augment: Augment | None = None) -> StepLoss:
    """The cross-entropy of a batch's logits with its labels; of a language model's next tokens on blocks."""
    language = is_language_model(split)

    def step(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x, y = split.batch(idx, device, augment)
        logits = forward(model, x)
        return nn.functional.cross_entropy(*next_token(logits, y) if language else (logits, y))

    return step


def adam(parameters: Iterable[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with the fused kernel: on CPU, torch's default runs the update tensor by tensor in eight
    separate ops (lerp_, mul_, addcmul_, sqrt, ...); fused is one kernel per step (6x faster per step in
    a micro-benchmark on a loaded machine; no measurable change of `make run`'s wall time)."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True)
