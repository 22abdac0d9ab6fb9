"""A model's cost on the budget's terms, measured, and how it stands against each limit.

The cost is the deployable's: the model exported to ONNX as the export stage exports it (taking raw inputs), and
quantized when the precision is int8, timed on ONNX Runtime at the budget's batch size with the run's thread
count, side by side with the unpruned teacher's file and across windows (steps/core/latency.py). Each limit
gets a verdict: pass (the whole interval within it), over, or inconclusive (the interval straddles it: the
machine's noise, not the model, decides; refused all the same). Sizes and counts are exact: pass or over.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steps import config
from steps.compression import measure, onnx_export, quantization
from steps.compression.training import rows
from steps.core import latency
from steps.core.latency import INCONCLUSIVE, OVER, PASS, REFERENCE, Timing

LATENCY, SPEEDUP = "latency_p95_ms", "speedup"


@dataclass(frozen=True)
class Measured:
    """Where a limit's value is in a cost: the estimate, the ends of its interval (None: exact), and whether
    the limit is a floor (at least it) rather than a ceiling."""

    estimate: str
    low: str | None = None
    high: str | None = None
    at_least: bool = False

    def held(self, cost: dict, upper: bool) -> float:
        """The value held against the limit: the interval's unfavourable end (`upper`, when the cost has an
        interval), else the estimate."""
        end = (self.low if self.at_least else self.high) if upper and self.low is not None else None
        return cost[end] if end is not None and cost.get(end) is not None else cost[self.estimate]


MEASURED = {LATENCY: Measured(LATENCY, "latency_p95_low_ms", "latency_p95_high_ms"),
            SPEEDUP: Measured(SPEEDUP, "speedup_low", "speedup_high", at_least=True),
            "size_kb": Measured("size_kb"), "parameters": Measured("parameters"), "macs": Measured("macs")}
"""Budget key -> where its value is in a cost."""


def search_timing(params: config.Params) -> Timing:
    """How the search times each setting it visits."""
    opts = params.target.search
    return Timing(params.target.batch_size, params.threads, opts.warmup, opts.search_repeats, opts.search_seconds)


def verify_timing(params: config.Params, batch_size: int | None = None) -> Timing:
    """How a candidate, and evaluate's deployable, are timed against the budget (at the budget's batch size unless
    another is given)."""
    opts = params.target.search
    return Timing(batch_size or params.target.batch_size, params.threads, opts.warmup, opts.verify_repeats,
                  opts.verify_seconds, opts.verify_windows)


def deployable_file(model: torch.nn.Module, example: torch.Tensor, precision: str, folder: Path,
                    calibration: np.ndarray | None, contract=None, export: config.ExportConfig | None = None) -> Path:
    """`model` as the ONNX file that would be deployed: fp32, or its int8 version by `precision`. With the data's
    input `contract` and the `export` settings the graph is the one the export stage writes (it starts with the
    data's scaling; the same opset and exporter), so the same graph is timed;
    the int8 ranges of a static file then come from normalised calibration images, which changes its scales but
    not the work it does, so not its latency. A text model's graph starts at the token ids (`example` holds them
    by name): nothing goes in front of it, as in the export stage (steps/export.py)."""
    if contract is not None and not contract.texts:
        from steps.compression.raw_input import RawInput

        model = RawInput(model, list(contract.mean), list(contract.std), contract.images)
    fp32 = folder / "fp32.onnx"
    settings = (export.opset, export.exporter) if export is not None else ()
    onnx_export.export(model, rows(example, slice(0, 1)), fp32, *settings)
    if precision == "fp32":
        return fp32
    out = folder / f"{precision}.onnx"
    quantization.quantize(fp32, out, precision, calibration if precision == "static" else None)
    return out


def timed_batch(split, batch_size: int):
    """`batch_size` samples of `split` (repeated when it is smaller): the batch the latency budget is for; a text's
    token ids and attention masks by name."""
    if isinstance(split.x, dict):
        return rows(split.x, torch.arange(batch_size) % len(split))
    reps = -(-batch_size // len(split))
    return split.x.repeat(reps, *([1] * (split.x.dim() - 1)))[:batch_size].contiguous()


def file_cost(path: Path, batch: torch.Tensor, timing: Timing, reference: Path | None = None) -> dict:
    """{latency_p95_ms with its interval, latency_p50_ms, size_kb, the windows' p95s} of one ONNX file; with a
    `reference` file timed in the same turns, also its speedup over it (steps/core/latency.py reading)."""
    files = {"model": path} | ({REFERENCE: reference} if reference is not None else {})
    timed = latency.time_files(files, batch if isinstance(batch, dict) else batch.numpy(), timing)
    return {**latency.reading(timed, "model", REFERENCE if reference is not None else None),
            "size_kb": measure.file_size(path) / 1024}


def counts(model: torch.nn.Module, example: torch.Tensor) -> dict:
    return {"parameters": measure.parameters(model), "macs": measure.macs(model, rows(example, slice(0, 1)))}


def cost(model: torch.nn.Module, batch: torch.Tensor, precision: str, timing: Timing,
         calibration: np.ndarray | None = None, reference: Path | None = None, contract=None,
         export: config.ExportConfig | None = None) -> dict:
    """{precision, latency_p95_ms (and its interval), size_kb, parameters, macs; speedup with a `reference`} of the
    deployable form of `model` (deployable_file); `batch` is timed (its length is the budget's batch size)."""
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory(prefix="shrinkflow-budget-") as scratch:
        path = deployable_file(model, batch, precision, Path(scratch), calibration, contract, export)
        return {"precision": precision, **file_cost(path, batch, timing, reference), **counts(model, batch)}


def _aim(key: str, limit: float, margin: float) -> float:
    """The limit less `margin` of it: lower for a ceiling, higher for a floor (speedup)."""
    return limit * (1 + margin) if MEASURED[key].at_least else limit * (1 - margin)


def verdict_of(measured: dict, key: str, limit: float, margin: float = 0.0, upper: bool = True) -> str:
    """PASS | OVER | INCONCLUSIVE of one limit (less `margin` of it). With `upper`, a measured value is judged by
    its interval (latency.verdict); without (the search's walk, a few calls per setting), by its estimate."""
    spec, aim = MEASURED[key], _aim(key, limit, margin)
    if upper and spec.low is not None and measured.get(spec.low) is not None:
        return latency.verdict(measured[spec.low], measured[spec.high], aim, spec.at_least)
    value = spec.held(measured, upper)
    return latency.verdict(value, value, aim, spec.at_least)


def verdicts(measured: dict, limits: config.BudgetConfig, margin: float = 0.0, upper: bool = True) -> dict[str, str]:
    """{budget key: PASS | OVER | INCONCLUSIVE} of each limit that is set (verdict_of)."""
    return {key: verdict_of(measured, key, limit, margin, upper) for key, limit in limits.limits().items()}


def excess(measured: dict, limits: config.BudgetConfig, margin: float = 0.0, upper: bool = True) -> float:
    """How far past the budget (each limit less `margin` of it), summed over its limits as fractions of each
    (0: within every limit), by the unfavourable end of each interval (`upper`) or the estimates."""
    total = 0.0
    for key, limit in limits.limits().items():
        value, aim = MEASURED[key].held(measured, upper), _aim(key, limit, margin)
        total += max(0.0, aim / value - 1) if MEASURED[key].at_least else max(0.0, value / aim - 1)
    return total


def violations(measured: dict, limits: config.BudgetConfig, margin: float = 0.0, upper: bool = True) -> list[str]:
    """A sentence for each limit not passed: 'latency_p95_ms 0.31 > 0.2 (upper end of its 95% interval)', or
    'latency_p95_ms inconclusive: ...' when the interval straddles the limit."""
    out = []
    for key, verdict in verdicts(measured, limits, margin, upper).items():
        if verdict == PASS:
            continue
        full, spec = limits.limits()[key], MEASURED[key]
        aim = _aim(key, full, margin)
        margin_text = f" ({full:.4g} {'plus' if spec.at_least else 'less'} the {margin:.0%} margin)" if margin else ""
        if verdict == INCONCLUSIVE:
            out.append(f"{key} inconclusive: its 95% interval [{measured[spec.low]:.4g}, {measured[spec.high]:.4g}] "
                       f"across {measured.get('windows', 1)} timing window(s) straddles {aim:.4g}{margin_text}; "
                       "the machine's noise decides, not the model (re-measure on a quieter machine"
                       + ("" if key == SPEEDUP else ", or give the budget relative to the teacher: target.speedup")
                       + ")")
            continue
        value = spec.held(measured, upper)
        end = ("" if not upper or spec.low is None else
               f" ({'lower' if spec.at_least else 'upper'} end of its 95% interval)")
        out.append(f"{key} {value:.4g} {'<' if spec.at_least else '>'} {aim:.4g}{margin_text}{end}")
    return out


def describe_latency(measured: dict) -> str:
    """'p95 0.12 ms [0.11, 0.13], 3.1x the teacher [3.0, 3.2]': the timed part of a cost."""
    speed = (f", {measured[SPEEDUP]:.3g}x the teacher [{measured['speedup_low']:.3g}, {measured['speedup_high']:.3g}]"
             if measured.get(SPEEDUP) is not None else "")
    low, high = measured["latency_p95_low_ms"], measured["latency_p95_high_ms"]
    interval = f" [{low:.4g}, {high:.4g}]" if low is not None else ""
    return f"p95 {measured[LATENCY]:.4g} ms{interval}{speed}"


def describe(measured: dict) -> str:
    """'fp32: p95 0.12 ms [0.11, 0.13], 3.1x the teacher [3.0, 3.2], 96.3 KiB, 24,586 params, 1.2M MACs'."""
    return (f"{measured['precision']}: {describe_latency(measured)}, {measured['size_kb']:.1f} KiB, "
            f"{measured['parameters']:,} params, {measured['macs'] / 1e6:.2f}M MACs")
