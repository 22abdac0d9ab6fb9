"""Channel-width benchmark: how latency follows MACs when a CNN's channels are pruned to different widths.

    .venv/bin/python benchmarks/widths.py            # about 1 min on 2 idle cores
    .venv/bin/python benchmarks/widths.py --quick    # tiny settings: checks that it runs

Random weights (latency does not depend on them): the compression recipe's teacher
(conv 32/64/128, 256 hidden) and the widths structured pruning leaves at 25% and
35% of channels, exact and rounded down to multiples of 8 and 16
(`prune.round_to`). Every model is timed eager and as an ONNX Runtime fp32 file,
interleaved in this one process, at the latency batch size. The question it
answers: does a structurally pruned model run as much faster as its MACs say,
and what do the channel counts have to do with it?
"""

from __future__ import annotations

from pathlib import Path

import torch

# This script's folder is on sys.path when it runs.
import common
from common import merge

from steps import config
from steps.compression import measure, onnx_export
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.structured import layer_widths, target_widths

TEACHER = ModelSpec(name="cnn", channels=[32, 64, 128], hidden=[256])
CUTS = ((0.25, 1), (0.25, 8), (0.25, 16), (0.35, 1), (0.35, 8), (0.35, 16))


def pruned_spec(sparsity: float, round_to: int) -> ModelSpec:
    """The widths per-layer structured pruning keeps: 3 convs and the hidden layer."""
    widths = list(target_widths(layer_widths(build(TEACHER)), sparsity, round_to).values())
    return ModelSpec(name="cnn", channels=widths[:3], hidden=widths[3:])


def benchmark(work: Path, raw: dict) -> list[dict]:
    params = config.validate(raw)
    specs = {"teacher": TEACHER} | {f"{s:.0%} of channels, round_to {r}": pruned_spec(s, r) for s, r in CUTS}
    x = torch.randn(params.evaluate.latency_batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    models, files = {}, {}
    for i, (name, spec) in enumerate(specs.items()):
        models[name] = build(spec).eval()
        files[name] = work / f"{i}.onnx"
        onnx_export.export(models[name], x[:2], files[name], params.export.opset, params.export.exporter)
    cfg, threads = params.evaluate, params.threads
    eager = measure.latency_ms(models, x, cfg.latency_warmup, cfg.latency_repeats, threads)
    ort = measure.onnx_latency_ms(files, x.numpy(), cfg.latency_warmup, cfg.latency_repeats, threads)
    macs = {name: measure.macs(model, x[:1]) for name, model in models.items()}
    rows = []
    for name, spec in specs.items():
        reduction = macs["teacher"] / macs[name]
        speedups = {backend: t["teacher"]["p50"] / t[name]["p50"] for backend, t in (("eager", eager), ("ort", ort))}
        rows.append({"name": name, "channels": spec.channels, "hidden": spec.hidden, "macs": macs[name],
                     "mac_reduction": reduction, "eager_p50_ms": eager[name]["p50"], "ort_p50_ms": ort[name]["p50"],
                     **{f"{b}_speedup": v for b, v in speedups.items()},
                     **{f"{b}_speedup_per_mac": v / reduction for b, v in speedups.items()}})
    return rows


def table(rows: list[dict], batch: int) -> str:
    lines = [f"Latency p50 at batch {batch}; speedup vs the teacher = speedup / MAC reduction.", "",
             "| widths (conv / hidden) | MAC reduction | eager p50 ms | eager speedup | ORT p50 ms | ORT speedup |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']}: {'/'.join(map(str, r['channels']))} / {'/'.join(map(str, r['hidden']))} | "
              f"{r['mac_reduction']:.2f}x | {r['eager_p50_ms']:.2f} | {r['eager_speedup']:.2f}x = "
              f"{r['eager_speedup_per_mac']:.2f} | {r['ort_p50_ms']:.2f} | {r['ort_speedup']:.2f}x = "
              f"{r['ort_speedup_per_mac']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def quick(raw: dict) -> dict:
    return merge(raw, {"evaluate": {"latency_batch_size": 8, "latency_warmup": 1, "latency_repeats": 3}})


def main() -> None:
    args = common.parser(__doc__).parse_args()
    raw = common.params(args, quick)
    rows = common.in_scratch("shrinkflow-widths-", benchmark, raw)
    common.report(args, "widths", "Channel-width benchmark", table(rows, raw["evaluate"]["latency_batch_size"]),
                  {"rows": rows}, note="Random weights.", threads=raw["threads"], evaluate=raw["evaluate"])


if __name__ == "__main__":
    main()
