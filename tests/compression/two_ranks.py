"""What each of two spawned gloo processes runs in tests/compression/test_parallel_scoring.py (a module of its own, light to
import: each process imports it anew)."""

from __future__ import annotations

import torch
from torch import distributed as dist
from torch import nn

from steps.compression import parallel
from steps.compression.training import Split, accuracy


def split() -> Split:
    """101 rows of 6 features and 5 classes: 51 rows for rank 0 of 2, 50 for rank 1."""
    g = torch.Generator().manual_seed(0)
    return Split(torch.randn(101, 6, generator=g), torch.randint(0, 5, (101,), generator=g))


def batch_norm_classifier() -> tuple[nn.Module, Split]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5)), split()


def score(rank: int, store: str, out: str) -> None:
    """Rank `rank` of two: BatchNorm statistics of its own batch, rank 0's taken, its part of the split scored."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
    try:
        model, rows = batch_norm_classifier()
        model.train()(torch.randn(32, 6) + rank)  # each rank's own running statistics
        parallel.broadcast_buffers(model)
        torch.save({"state": model.state_dict(), "accuracy": accuracy(model, rows)}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()
