"""What a compressed model costs: parameters, non-zeros, bytes, MACs, CPU latency, CUDA latency."""

from __future__ import annotations

import contextlib
import io
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steps.compression.training import Inputs, evaluating, forward, to_device


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


def macs(model: nn.Module, example: Inputs) -> int:
    """Multiply-accumulates of one forward pass on `example` (dense count: zeros still cost); named tensors (token
    ids) go in as keyword arguments."""
    import torch_pruning as tp

    # Its batch counter prints a warning for every call without positional inputs (named token ids) and then
    # assumes a batch of one, which the example is: a budget search counts dozens of shapes.
    with evaluating(model), contextlib.redirect_stdout(io.StringIO()):
        ops, _ = tp.utils.count_ops_and_params(model, example)
    return int(ops)


MAX_CALLS = 100_000
"""Bound on timed calls per runner when `min_seconds` asks for more than `repeats` (memory, and the sort of the
samples)."""


def interleaved_samples(runners: dict[str, Callable[[], object]], warmup: int, repeats: int,
                        min_seconds: float = 0.0, block: int = 1,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Wall time in ms of every timed call of each zero-argument runner: {name: [ms, ...]}.

    Runners are timed interleaved (A B C A B C ..., the order rotating each
    round) after warm-up, so drift in machine load hits every one alike and
    the ratios between them hold up. At least `repeats` calls each, and more
    until the timed rounds have lasted `min_seconds`: a tail percentile of calls
    that take 0.1 ms, timed 200 times (20 ms), is decided by a single hiccup of
    the machine; timed for a second it is not.

    With `block` > 1 each turn is `block` timed calls back to back, after one
    untimed call: a small model timed alone stays in the CPU's caches, as a
    deployed one serving requests does; timed in strict turns with five other
    small CNNs, each measured 2-31% slower here (two repetitions).

    `clock` (seconds) is there for tests: a fake one makes the timing logic deterministic.
    """
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for _ in range(warmup):
        for runner in runners.values():
            runner()
    began, r = clock(), 0
    while r * block < repeats or (clock() - began < min_seconds and r * block < MAX_CALLS):
        for name in names[r % len(names):] + names[: r % len(names)]:
            if block > 1:
                runners[name]()
            for _ in range(block):
                start = clock()
                runners[name]()
                samples[name].append((clock() - start) * 1e3)
        r += 1
    return samples


def interleaved_ms(runners: dict[str, Callable[[], object]], warmup: int, repeats: int,
                   keep_samples: bool = False, min_seconds: float = 0.0, block: int = 1,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """{name: {"p50", "p95"}} in ms of runners timed interleaved (see interleaved_samples).

    With `keep_samples`, each entry also holds "samples" (the raw list), so a caller
    can put a confidence interval on p95 (steps/core/stats/quantiles.py; this layer imports torch only).
    """
    timed = interleaved_samples(runners, warmup, repeats, min_seconds, block, clock)
    return {name: _percentiles(values) | ({"samples": values} if keep_samples else {})
            for name, values in timed.items()}


def latency_ms(models: dict[str, nn.Module], batch: Inputs, warmup: int, repeats: int,
               threads: int, keep_samples: bool = False) -> dict[str, dict]:
    """PyTorch eager: one forward pass on `batch` per model, at a fixed thread count, timed interleaved."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with contextlib.ExitStack() as stack:
            for model in models.values():
                stack.enter_context(evaluating(model))
            runners = {name: (lambda m=model: forward(m, batch)) for name, model in models.items()}
            return interleaved_ms(runners, warmup, repeats, keep_samples)
    finally:
        torch.set_num_threads(previous)


def cuda_latency_ms(model: nn.Module, batch: Inputs, warmup: int, repeats: int,
                    keep_samples: bool = False) -> dict[str, float]:
    """{"p50", "p95", "max", "n"} (and the raw "samples" with `keep_samples`) in ms of one forward pass of a model
    on a CUDA device, timed by CUDA events.

    A kernel launch returns before the GPU has run it, so a wall clock around forward() times the launches; a pair
    of events recorded on the stream around it times the GPU's work. `warmup` passes first (cuDNN's algorithm
    choice, the caching allocator's first blocks), then a synchronize so none of their work is timed; each timed
    pass waits for its end event. `batch` is moved to the model's device."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError(f"cuda_latency_ms times a model on a CUDA device; this one is on {device}")
    x = to_device(batch, device)
    samples = []
    with evaluating(model):
        for _ in range(warmup):
            forward(model, x)
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            forward(model, x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
    return _percentiles(samples) | ({"samples": samples} if keep_samples else {})


def onnx_latency_ms(files: dict[str, Path], batch, warmup: int, repeats: int,
                    threads: int, keep_samples: bool = False, min_seconds: float = 0.0,
                    block: int = 1) -> dict[str, dict]:
    """ONNX Runtime (CPU provider, `threads` intra-op threads): one run on `batch` per file, timed interleaved
    (interleaved_samples: `repeats`, `min_seconds`, `block`)."""
    return interleaved_ms(onnx_runners(files, batch, threads), warmup, repeats, keep_samples, min_seconds, block)


def onnx_runners(files: dict[str, Path], batch, threads: int,
                 provider: str = "CPUExecutionProvider") -> dict[str, Callable[[], object]]:
    """{name: a zero-argument call running that ONNX file on `batch`} (ONNX Runtime, `threads` intra-op threads,
    on `provider`): what interleaved_samples times. `batch`: an array (images, features) or named token arrays
    (onnx_export.feed), fed from host memory (on CUDA each run copies it in and the logits out)."""
    from steps.compression.onnx_export import feed as feed_of
    from steps.compression.onnx_export import session

    feed = feed_of(batch)
    sessions = {name: session(path, threads, provider) for name, path in files.items()}
    return {name: (lambda s=sess: s.run(None, feed)) for name, sess in sessions.items()}


def _percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p95 as np.quantile computes them (linear interpolation), the same estimate whose
    confidence interval steps/core/stats/quantiles.quantile_ci gives; "max" bounds p95 when there are too
    few samples for an interval."""
    ordered = sorted(samples)
    p50, p95 = np.quantile(ordered, [0.5, 0.95])
    return {"p50": float(p50), "p95": float(p95), "max": ordered[-1], "n": len(ordered)}


def peak_memory_bytes(model: nn.Module, batch: Inputs) -> int:
    """Peak bytes allocated by the CPU allocator during one forward pass on `batch`.

    Replays the profiler's allocation (+) and free (-) events in time order and
    keeps the running maximum: activations plus workspace, weights excluded.

    The profiler's Kineto backend logs "USDT ... profiler_start/profiler_stop" to stderr on every
    session at any KINETO_LOG_LEVEL up to 5 (USDT is its level 5); 6 silences them. Kineto reads the
    variable when it starts, on the first profile of the process, so it is set before that
    (setdefault: a user who asked for Kineto's logs keeps them). The memory events are unaffected.
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile

    with evaluating(model), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward(model, batch)
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)
