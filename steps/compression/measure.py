"""What a compressed model costs: parameters, non-zeros, bytes, MACs, CPU latency."""

from __future__ import annotations

import statistics
import time
import zlib
from pathlib import Path

import torch
from torch import nn

from steps.compression.training import evaluating


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzeros(model: nn.Module) -> int:
    with torch.no_grad():
        return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def file_size(path: Path) -> int:
    return Path(path).stat().st_size


def compressed_size(path: Path) -> int:
    """Bytes after zlib: what zeros left by unstructured pruning really save in storage."""
    return len(zlib.compress(Path(path).read_bytes(), level=6))


def macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on `example` (dense count: zeros still cost)."""
    import torch_pruning as tp

    with evaluating(model):
        ops, _ = tp.utils.count_ops_and_params(model, example)
    return int(ops)


def latency_ms(model: nn.Module, batch: torch.Tensor, warmup: int, repeats: int, threads: int) -> dict[str, float]:
    """Wall time of one forward pass on `batch`, after warm-up, at a fixed thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with evaluating(model):
            for _ in range(warmup):
                model(batch)
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                samples.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"p50": statistics.median(samples), "p95": p95}


def peak_memory_bytes(model: nn.Module, batch: torch.Tensor) -> int:
    """Peak bytes allocated by the CPU allocator during one forward pass on `batch`.

    Replays the profiler's allocation (+) and free (-) events in time order and
    keeps the running maximum: activations plus workspace, weights excluded.
    """
    from torch.profiler import ProfilerActivity, profile

    with evaluating(model), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(batch)
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)
