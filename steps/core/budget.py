"""A model's cost on the budget's terms, measured, and how far over the budget it is.

The cost is the deployable's: the model exported to ONNX (and quantized when the precision is int8),
timed on ONNX Runtime at the budget's batch size with the run's thread count, p95 with its 95% interval
(steps/core/stats/quantiles.py). A latency limit is met only when the interval's upper end is within it, the rule
promote's latency gates use, so a lucky run on a quiet machine does not pass a model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steps import config
from steps.compression import measure, onnx_export, quantization
from steps.core.measurement import with_p95_interval

LATENCY = "latency_p95_ms"
MEASURED = {LATENCY: "latency_p95_high_ms", "size_kb": "size_kb", "parameters": "parameters", "macs": "macs"}
"""Budget key -> the cost entry held against it (latency: the upper end of the p95 interval)."""


@dataclass(frozen=True)
class Timing:
    """How a cost is timed: batch, threads, warm-up, and timed calls (at least `repeats`, for at least `seconds`)."""

    batch_size: int
    threads: int
    warmup: int
    repeats: int
    seconds: float = 0.0


def search_timing(params: config.Params) -> Timing:
    """How the search times each setting it visits."""
    opts = params.target.search
    return Timing(params.target.batch_size, params.threads, opts.warmup, opts.search_repeats, opts.search_seconds)


def verify_timing(params: config.Params, batch_size: int | None = None) -> Timing:
    """How a candidate, and evaluate's deployable, are timed against the budget (at the budget's batch size unless
    another is given)."""
    opts = params.target.search
    return Timing(batch_size or params.target.batch_size, params.threads, opts.warmup, opts.verify_repeats,
                  opts.verify_seconds)


def deployable_file(model: torch.nn.Module, example: torch.Tensor, precision: str, folder: Path,
                    calibration: np.ndarray | None) -> Path:
    """`model` as the ONNX file that would be deployed: fp32, or its int8 version by `precision`."""
    fp32 = folder / "fp32.onnx"
    onnx_export.export(model, example[:1], fp32)
    if precision == "fp32":
        return fp32
    out = folder / f"{precision}.onnx"
    quantization.quantize(fp32, out, precision, calibration if precision == "static" else None)
    return out


def timed_batch(split, batch_size: int) -> torch.Tensor:
    """`batch_size` samples of `split` (repeated when it is smaller): the batch the latency budget is for."""
    reps = -(-batch_size // len(split))
    return split.x.repeat(reps, *([1] * (split.x.dim() - 1)))[:batch_size].contiguous()


def file_cost(path: Path, batch: torch.Tensor, timing: Timing) -> dict:
    """{latency_p95_ms, latency_p95_low_ms, latency_p95_high_ms, size_kb} of one ONNX file."""
    timed = measure.onnx_latency_ms({"model": path}, batch.numpy(), timing.warmup, timing.repeats, timing.threads,
                                    keep_samples=True, min_seconds=timing.seconds)["model"]
    latency = with_p95_interval(timed)
    return {LATENCY: latency["p95"], "latency_p95_low_ms": latency["p95_low"],
            "latency_p95_high_ms": latency["p95_high"], "size_kb": measure.file_size(path) / 1024}


def counts(model: torch.nn.Module, example: torch.Tensor) -> dict:
    return {"parameters": measure.parameters(model), "macs": measure.macs(model, example[:1])}


def cost(model: torch.nn.Module, batch: torch.Tensor, precision: str, timing: Timing,
         calibration: np.ndarray | None = None) -> dict:
    """{precision, latency_p95_ms (and its interval), size_kb, parameters, macs} of the deployable form of
    `model`; `batch` is timed (its length is the budget's batch size)."""
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory(prefix="shrinkflow-budget-") as scratch:
        path = deployable_file(model, batch, precision, Path(scratch), calibration)
        return {"precision": precision, **file_cost(path, batch, timing), **counts(model, batch)}


def _held(key: str, upper: bool) -> str:
    """The cost entry held against a limit: for latency the upper end of the p95 interval, or (`upper` False,
    while searching) the p95 itself: from the search's fewer calls the upper end is about the slowest one."""
    return MEASURED[key] if upper or key != LATENCY else LATENCY


def excess(measured: dict, limits: config.BudgetConfig, margin: float = 0.0, upper: bool = True) -> float:
    """How far over the budget (each limit less `margin` of it), summed over its limits as fractions of each
    (0: within every limit)."""
    return sum(max(0.0, measured[_held(key, upper)] / (limit * (1 - margin)) - 1)
               for key, limit in limits.limits().items())


def violations(measured: dict, limits: config.BudgetConfig, margin: float = 0.0, upper: bool = True) -> list[str]:
    """'latency_p95_ms 0.31 > 0.2 (p95 95% CI upper end)' for each limit (less `margin` of it) the cost is over."""
    out = []
    for key, full in limits.limits().items():
        value, limit = measured[_held(key, upper)], full * (1 - margin)
        if value > limit:
            what = " (upper end of the p95's 95% interval)" if key == LATENCY and upper else ""
            aim = f" ({full:.4g} less the {margin:.0%} margin)" if margin else ""
            out.append(f"{key} {value:.4g} > {limit:.4g}{aim}{what}")
    return out


def describe(measured: dict) -> str:
    """'fp32: p95 0.12 ms [0.11, 0.13], 96.3 KiB, 24,586 params, 1.2M MACs' for messages and logs."""
    return (f"{measured['precision']}: p95 {measured[LATENCY]:.4g} ms [{measured['latency_p95_low_ms']:.4g}, "
            f"{measured['latency_p95_high_ms']:.4g}], {measured['size_kb']:.1f} KiB, "
            f"{measured['parameters']:,} params, {measured['macs'] / 1e6:.2f}M MACs")
