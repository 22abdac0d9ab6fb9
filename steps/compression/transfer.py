"""Moving batches from host memory to a CUDA device: pinned (page-locked) memory and asynchronous copies.

A copy from pageable memory to a GPU is synchronous (the driver stages it through a pinned buffer of its own);
from pinned memory it is one DMA that `non_blocking=True` queues on the stream, so the CPU goes on to launch the
step's kernels. On CUDA each batch is gathered straight into pinned memory (`pinned_rows`); the split itself stays
where it is: gathering rows of a pinned tensor by an index makes a new, pageable tensor anyway, so pinning a whole
split would only double its host memory. torch's caching host allocator reuses the batch buffers and keeps one
from reuse until its copy has run. On any other device nothing here runs: the batch path is the one it always was.
"""

from __future__ import annotations

import torch


def pin(t: torch.Tensor) -> torch.Tensor:
    """`t` in pinned memory (itself when it already is)."""
    return t if t.is_pinned() else t.pin_memory()


def pinned_rows(t: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
    """The rows `idx` of `t`, gathered into a pinned buffer (one copy, not a gather and then a pin); a slice of a
    pinned tensor is a view of it, pinned already."""
    if isinstance(idx, slice):
        return pin(t[idx])
    out = torch.empty((len(idx), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
    return torch.index_select(t, 0, idx, out=out)


def to_cuda(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor copied to the CUDA `device` asynchronously from pinned memory (pinned first if it is not);
    the stream orders the copy before the kernels that read it."""
    if t.device.type != "cpu":
        return t.to(device)
    return pin(t).to(device, non_blocking=True)
