"""Measuring models side by side: accuracy and macro-F1, size, MACs, memory, and latency in PyTorch eager and
ONNX Runtime.

The evaluate stage, the sweep's frontier and the audit all measure through `measure_all`, so a
number in the report, in a sweep and in an audit means the same thing.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from steps import config
from steps.compression import accelerator, measure, progress
from steps.compression.training import count, predict_logits, rows
from steps.core.layout import model_dir, model_path
from steps.core.names import ModelRole
from steps.core.stats import quantiles
from steps.core.stats.classes import macro_f1
from steps.core.torchkit import load_model

EAGER, ONNXRUNTIME = "eager", "onnxruntime"


def batch_key(size: int) -> str:
    return f"batch_{size}"


def static_metrics(root: Path, role: ModelRole, model, test, batch) -> dict:
    """Everything but latency: accuracy and macro-F1, sizes, MACs, peak memory."""
    weights = weights_files(root, role)
    logits = predict_logits(model, test.x)  # once, for both
    predicted = logits.argmax(1)
    return {
        "accuracy": (predicted == test.y).float().mean().item(),  # as training.accuracy computes it
        "macro_f1": macro_f1(test.y.numpy(), predicted.numpy(), logits.shape[1]),
        "parameters": measure.parameters(model),
        "nonzeros": measure.nonzeros(model),
        "file_bytes": sum(measure.file_size(w) for w in weights),
        "compressed_bytes": sum(measure.compressed_size(w) for w in weights),
        "macs": measure.macs(model, rows(test.x, slice(0, 1))),
        "peak_memory_bytes": measure.peak_memory_bytes(model, batch),
    }


def weights_files(root: Path, role: ModelRole) -> list[Path]:
    """The files holding a model's weights: its .safetensors file, or in a family's checkpoint folder (hf's
    save_pretrained folder) its safetensors files (one, or the shards), not the config and tokenizer beside them."""
    folder = root / model_dir(role)
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else [root / model_path(role)]


P95_CONFIDENCE = 0.95
"""Confidence of the p95 interval every latency carries (p95_low, p95_high)."""


def with_p95_interval(timing: dict) -> dict:
    """{p50, p95, max, n, p95_low, p95_high} from a timing with raw "samples" (which are dropped).

    The interval is distribution-free (order statistics, quantiles.quantile_ci). With fewer than
    quantiles.min_samples_for_quantile(0.95, 0.95) = 72 samples there is none: p95_low and p95_high
    are None, and a gate must fall back on "max" (the slowest call), saying so.
    """
    out = {k: v for k, v in timing.items() if k != "samples"}
    samples = timing["samples"]
    if len(samples) >= quantiles.min_samples_for_quantile(0.95, P95_CONFIDENCE):
        ci = quantiles.quantile_ci(samples, 0.95, P95_CONFIDENCE)
        return out | {"p95_low": ci.low, "p95_high": ci.high}
    return out | {"p95_low": None, "p95_high": None}


def _intervals(timed: dict[str, dict]) -> dict[str, dict]:
    return {name: with_p95_interval(t) for name, t in timed.items()}


def clocks(device: torch.device | None = None) -> dict[str, str]:
    """What times each backend on `device` (None: the CPU), as the report says it: {"eager": perf_counter or
    cuda_events, "onnxruntime": the execution provider, with why it is the CPU's when CUDA was asked for}."""
    import onnxruntime as ort

    device = device or torch.device("cpu")
    return {EAGER: accelerator.eager_clock(device),
            ONNXRUNTIME: accelerator.onnx_provider(device, ort.get_available_providers())[1]}


def timed_on_cpu(clock: str | None) -> bool:
    """Whether a latency clock as `clocks` names it (an evaluate run's `latency.<backend>` tag) was the CPU's:
    perf_counter or ONNX Runtime's CPU provider; an untagged run (before GPUs) was."""
    return clock is None or clock == accelerator.PERF_COUNTER or clock.startswith(accelerator.CPU_PROVIDER)


def latencies(models: dict, onnx_files: dict[str, Path], batches: dict[str, object], cfg: config.EvaluateConfig,
              threads: int, device: torch.device | None = None) -> dict[str, dict]:
    """{backend: {batch key: {name: {p50, p95, p95_low, p95_high, max, n, ...}}}}: eager models and ONNX files,
    each set timed interleaved; the ONNX files (what is deployed and gated) in `cfg.latency_windows` windows.
    On a CUDA `device` eager models are timed there one after another by CUDA events (measure.cuda_latency_ms),
    and the ONNX files on ONNX Runtime's CUDA provider when it is installed (clocks)."""
    out: dict[str, dict] = {EAGER: {}, ONNXRUNTIME: {}}
    on_cuda = device is not None and accelerator.is_cuda(device)
    provider = accelerator.onnx_provider(device, _providers())[0] if on_cuda else accelerator.CPU_PROVIDER
    for key, batch in batches.items():
        began = time.perf_counter()
        out[EAGER][key] = _intervals(
            cuda_eager(models, batch, cfg, device) if on_cuda else
            measure.latency_ms(models, batch, cfg.latency_warmup, cfg.latency_repeats, threads, keep_samples=True))
        if onnx_files:
            out[ONNXRUNTIME][key] = onnx_windows(onnx_files, batch, cfg, threads, provider)
        progress.report("latency", f"{key} timed", {"eager_models": len(models), "onnx_files": len(onnx_files),
                                                    "repeats": cfg.latency_repeats}, progress.since(began))
    return out


def _providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def cuda_eager(models: dict, batch, cfg: config.EvaluateConfig, device: torch.device) -> dict[str, dict]:
    """{name: {p50, p95, max, n, samples}}: each model copied to the CUDA `device` and timed there by CUDA events
    after warm-up and a synchronize (the models themselves stay where they are)."""
    return {name: measure.cuda_latency_ms(copy.deepcopy(model).to(device), batch, cfg.latency_warmup,
                                          cfg.latency_repeats, keep_samples=True)
            for name, model in models.items()}


def onnx_windows(files: dict[str, Path], batch, cfg: config.EvaluateConfig, threads: int,
                 provider: str = accelerator.CPU_PROVIDER) -> dict[str, dict]:
    """{name: {p50, p95, p95_low, p95_high, max, n, windows}} of ONNX files run on `batch` (what the graphs take:
    onnx_export.feed of a tensor, or of token ids by name) timed in turns in `cfg.latency_windows`
    windows of `cfg.latency_repeats` calls each (steps/core/latency.py): p95's interval spans the windows'
    disagreement. Every file after the first also gets its speedup over the first (the teacher, in evaluate)
    with its interval: speedup_low, speedup_high."""
    from steps.core import latency

    timing = latency.Timing(count(batch), threads, cfg.latency_warmup, cfg.latency_repeats, 0.0, cfg.latency_windows,
                            provider)
    timed = latency.time_files(files, batch, timing)
    first, out = next(iter(files)), {}
    for name in files:
        read = latency.reading(timed, name, first if name != first else None)
        every = np.concatenate(timed[name])
        out[name] = {"p50": read["latency_p50_ms"], "p95": read["latency_p95_ms"],
                     "p95_low": read["latency_p95_low_ms"], "p95_high": read["latency_p95_high_ms"],
                     "max": float(every.max()), "n": len(every), "windows": read["windows"],
                     **({"speedup_low": read["speedup_low"], "speedup_high": read["speedup_high"]}
                        if "speedup" in read else {})}
    return out


def measure_models(models: dict[str, tuple[Path, ModelRole]], test, cfg: config.EvaluateConfig, threads: int,
                   onnx_files: dict[str, Path] | None = None) -> dict[str, dict]:
    """{name: metrics} for models given as (project root, role); latency timed side by side."""
    return measure_all(models, test, cfg, threads, onnx_files)[0]


def measure_all(models: dict[str, tuple[Path, ModelRole]], test, cfg: config.EvaluateConfig, threads: int,
                onnx_files: dict[str, Path] | None = None,
                device: torch.device | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """({name: metrics}, all timings {backend: {batch key: {name: {p50, p95}}}}).

    Latency is PyTorch eager and, for the files in `onnx_files` (which may
    include files with no PyTorch model, e.g. int8 ones), ONNX Runtime, at
    batch 1 and at `latency_batch_size`. The headline `latency_p50_ms`,
    `latency_p95_ms` and `speedup` use `cfg.latency_backend` (eager when no
    ONNX files are given). Everything but latency is measured on the CPU; latency on a CUDA `device` is the
    GPU's (latencies, clocks), on None or the CPU the same as always.
    """
    big = rows(test.x, slice(0, cfg.latency_batch_size))  # text: (batch, the data's max_length) token ids
    batches = {batch_key(1): rows(test.x, slice(0, 1)), batch_key(count(big)): big}
    loaded = {name: load_model(root, role)[0] for name, (root, role) in models.items()}
    results = {name: static_metrics(*models[name], model, test, big) for name, model in loaded.items()}
    timed = latencies(loaded, onnx_files or {}, batches, cfg, threads, device)
    backend = cfg.latency_backend if onnx_files else EAGER
    first = next(iter(results))
    for name, metrics in results.items():
        metrics["latency"] = timings_of(timed, name)
        if onnx_files and name in onnx_files:
            metrics["onnx_bytes"] = measure.file_size(onnx_files[name])
        headline = metrics["latency"][backend][batch_key(count(big))]
        metrics["latency_p50_ms"], metrics["latency_p95_ms"] = headline["p50"], headline["p95"]
        # the p95's confidence interval and what a gate falls back on without one (too few repeats)
        metrics["latency_p95_low_ms"], metrics["latency_p95_high_ms"] = headline["p95_low"], headline["p95_high"]
        metrics["latency_max_ms"], metrics["latency_samples"] = headline["max"], headline["n"]
        metrics["param_ratio"] = metrics["nonzeros"] / results[first]["nonzeros"]
        metrics["speedup"] = results[first]["latency_p50_ms"] / metrics["latency_p50_ms"]
        metrics["mac_reduction"] = results[first]["macs"] / metrics["macs"]
    return results, timed


def timings_of(timed: dict[str, dict], name: str) -> dict[str, dict]:
    """{backend: {batch key: {p50, p95}}} of one model or file, for the backends that timed it."""
    return {backend: {key: per_name[name] for key, per_name in by_batch.items()}
            for backend, by_batch in timed.items() if by_batch and all(name in p for p in by_batch.values())}
