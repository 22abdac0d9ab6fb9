"""The tables people read and the one Pareto plot: a run's comparison, its deployable files, a promotion line."""

from __future__ import annotations

import pandas as pd
from rich.console import Group
from rich.table import Table

from steps.core.names import ModelRole

BACKENDS = {"eager": "eager", "onnxruntime": "ORT"}

COLUMNS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "parameters": "params",
    "nonzeros": "non-zeros",
    "file_bytes": "size (KB)",
    "compressed_bytes": "zlib size (KB)",
    "macs": "MACs",
    "eager_p50_ms": "eager p50 ms",
    "onnxruntime_p50_ms": "ORT p50 ms",
    "eager_b1_p50_ms": "eager b1 p50 ms",
    "onnxruntime_b1_p50_ms": "ORT b1 p50 ms",
    "latency_p95_ms": "p95 ms",
    "speedup": "speedup",
    "peak_memory_bytes": "peak MB",
}


def _p50(metrics: dict, backend: str, batch: int) -> float:
    """p50 of one backend at one batch size; NaN where it was not measured (e.g. an old report)."""
    return metrics.get("latency", {}).get(backend, {}).get(f"batch_{batch}", {}).get("p50", float("nan"))


def frame(report: dict) -> pd.DataFrame:
    """One row per model, in pipeline order."""
    order = [role.value for role in ModelRole if role.value in report["models"]]
    big = report["latency_batch_size"]
    rows = []
    for role in order:
        m = report["models"][role]
        latency = {f"{b}_p50_ms": _p50(m, b, big) for b in BACKENDS}
        latency |= {f"{b}_b1_p50_ms": _p50(m, b, 1) for b in BACKENDS}
        rows.append({"model": role, **{k: m[k] for k in COLUMNS if k in m}, **latency})
    # reindex: a report written before a column existed (macro_f1) shows it as not measured (NaN)
    return pd.DataFrame(rows).set_index("model").reindex(columns=list(COLUMNS))


def backend(report: dict) -> str:
    """The latency the headline columns, the plot and the gates use."""
    return report["latency_backend"]


def table(report: dict, promotion: dict | None = None) -> Group:
    """The comparison of all models, then (when the pipeline exported them) the student's deployable ONNX files."""
    if report.get("language"):
        return language_table(report, promotion)
    big, chosen = report["latency_batch_size"], BACKENDS[backend(report)]
    title = (f"shrinkflow results (test set, CPU latency at batch {big} unless b1, {report['threads']} threads; "
             f"p95 and speedup: {chosen})")
    out = Table(title=title)
    out.add_column("model")
    for label in COLUMNS.values():
        out.add_column(label, justify="right")
    for role, row in frame(report).iterrows():
        out.add_row(
            role,
            f"{row['accuracy']:.2%}",
            f"{row['macro_f1']:.2%}",
            f"{int(row['parameters']):,}",
            f"{int(row['nonzeros']):,}",
            f"{row['file_bytes'] / 1024:,.0f}",
            f"{row['compressed_bytes'] / 1024:,.0f}",
            f"{row['macs'] / 1e6:.2f}M",
            *(f"{row[k]:.2f}" for k in ("eager_p50_ms", "onnxruntime_p50_ms", "eager_b1_p50_ms",
                                          "onnxruntime_b1_p50_ms", "latency_p95_ms")),
            f"{row['speedup']:.2f}x",
            f"{row['peak_memory_bytes'] / 2**20:.1f}",
        )
    if promotion is not None:
        out.caption = promotion_line(promotion)
    return Group(out, deploy_table(report)) if "deploy" in report else Group(out)


def language_table(report: dict, promotion: dict | None = None) -> Group:
    """Language models (data.task causal_lm): each model on the test documents, then the student's ONNX files."""
    out = Table(title=f"shrinkflow results (test documents; PyTorch, KV cache, batch 1, {report['threads']} threads)")
    for label in ("model", "perplexity", "bits/byte", "next-token acc", "params", "non-zero", "prefill ms",
                  "ms/token"):
        out.add_column(label, justify="left" if label == "model" else "right")
    for role, m in report["models"].items():
        timed = m["latency"]["pytorch_kv_cache"]
        out.add_row(role, f"{m['perplexity']:.3f}", f"{m['bits_per_byte']:.3f}", f"{m['next_token_accuracy']:.2%}",
                    f"{m['parameters']:,}", f"{m['nonzero_parameters']:,}", f"{timed['prefill_ms']:.2f}",
                    f"{timed['decode_ms_per_token']:.2f}")
    if promotion is not None:
        out.caption = promotion_line(promotion)
    files = Table(title="student ONNX files (ONNX Runtime, scored on the test blocks)")
    for label in ("file", "deployable", "perplexity", "vs fp32", "size (KB)", "size ratio"):
        files.add_column(label, justify="left" if label == "file" else "right")
    deploy = report["deploy"]
    for name, v in sorted(deploy["variants"].items(), key=lambda kv: kv[0] != "fp32"):  # fp32 first
        files.add_row(v["file"], "yes" if name == deploy["deployable"] else "", f"{v['perplexity']:.3f}",
                      f"{v['perplexity_ratio']:.3f}x", f"{v['file_bytes'] / 1024:,.0f}", f"{v['size_ratio']:.2f}")
    return Group(out, files)


def deploy_table(report: dict) -> Table:
    """The student as ONNX: fp32 and each int8 variant, with the deployable one marked."""
    deploy, big = report["deploy"], report["latency_batch_size"]
    out = Table(title=f"student ONNX files (ONNX Runtime, {report['threads']} threads)")
    for label in ("file", "deployable", "accuracy", "vs fp32", "size (KB)", "size ratio", "b1 p50 ms",
                  f"b{big} p50 ms"):
        out.add_column(label, justify="left" if label == "file" else "right")
    for name, v in sorted(deploy["variants"].items(), key=lambda kv: kv[0] != "fp32"):  # fp32 first
        out.add_row(v["file"], "yes" if name == deploy["deployable"] else "", f"{v['accuracy']:.2%}",
                    f"{0.0 - v['accuracy_drop'] * 100:+.2f} pt", f"{v['file_bytes'] / 1024:,.0f}", f"{v['size_ratio']:.2f}",
                    f"{v['latency']['batch_1']['p50']:.3f}", f"{v['latency'][f'batch_{big}']['p50']:.2f}")
    slower = slower_than_fp32(deploy, big)
    if slower:
        out.caption = f"int8 slower than fp32 on this CPU at batch {big}: {', '.join(slower)}"
    return out


def slower_than_fp32(deploy: dict, batch: int) -> list[str]:
    """The int8 variants whose ORT p50 at `batch` exceeds fp32's (honest reporting, see quantization.py)."""
    key = f"batch_{batch}"
    fp32 = deploy["variants"]["fp32"]["latency"][key]["p50"]
    return [name for name, v in deploy["variants"].items() if name != "fp32" and v["latency"][key]["p50"] > fp32]


def promotion_line(promotion: dict) -> str:
    where = f"{promotion['model_name']} v{promotion['version']}"
    if promotion["promoted"]:
        return f"promoted: {where} -> @{promotion['alias']} ({promotion['reason']})"
    return f"not promoted: {where} -> @{promotion['alias']} ({promotion['reason']})"


def report_figure(report: dict, labels: dict[str, str] | None = None):
    """The evaluate stage's plot: every model of one run, accuracy against p95 latency (with its 95%
    interval as an error bar, where measured) and size; each point labelled by what made it (`labels`)."""
    data = frame(report)
    models = report["models"]
    data["latency_p50_ms"] = [models[role]["latency_p95_ms"] for role in data.index]  # the plotted cost column
    low = [models[role].get("latency_p95_low_ms") for role in data.index]
    high = [models[role].get("latency_p95_high_ms") for role in data.index]
    if all(v is not None for v in (*low, *high)):
        data["latency_err_low"] = data["latency_p50_ms"] - low
        data["latency_err_high"] = pd.Series(high, index=data.index) - data["latency_p50_ms"]
    data["label"] = [(labels or {}).get(role, role) for role in data.index]
    latency = f"{BACKENDS[backend(report)]} CPU latency p95 (ms, batch {report['latency_batch_size']})"
    return pareto_figure(data, latency, "shrinkflow: accuracy vs cost (up and left is better)")


def _readable_axis(ax, log: bool) -> None:
    """Plain tick labels (12k, 300k, 1.2M): matplotlib's log axis labels minor ticks as 3x10^5 4x10^5 when the
    data spans less than a decade, and they overlap; here only 1-2-5 ticks are labelled, minor ones are not."""
    from matplotlib import ticker

    def human(value: float, _pos=None) -> str:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:g}{suffix}"
        return f"{value:g}"

    if log:
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(human))


def pareto_figure(data: pd.DataFrame, latency_label: str, title: str, fronts: dict[str, str] | None = None):
    """Accuracy against latency and against non-zero parameters: up and left is better on both panels.

    Points are labelled by the `label` column (what made them), else by `settings`, else by the index.
    With `fronts` ({cost column: boolean column}), the models on each panel's Pareto frontier are
    drawn red and joined by a step line, and only they are labelled (a sweep has many points).
    Optional `latency_err_low`/`latency_err_high` columns draw the latency interval as error bars.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = data["label"] if "label" in data else data["settings"] if "settings" in data else data.index.to_series()
    fig, axes = plt.subplots(1, 2, figsize=(12 if fronts else 11, 4.8 if fronts else 4.4), sharey=True)
    panels = (("latency_p50_ms", latency_label, False), ("nonzeros", "non-zero parameters", True))
    for ax, (cost, label, log) in zip(axes, panels, strict=True):
        labelled = data
        if fronts:
            flags = data[fronts[cost]]
            ax.scatter(data[cost], data["accuracy"] * 100, c=["tab:red" if f else "tab:gray" for f in flags])
            labelled = data[flags].sort_values(cost)
            ax.step(labelled[cost], labelled["accuracy"] * 100, where="post", color="tab:red", alpha=0.6)
        else:
            ax.scatter(data[cost], data["accuracy"] * 100)
        if cost == "latency_p50_ms" and "latency_err_low" in data:
            ax.errorbar(data[cost], data["accuracy"] * 100, xerr=[data["latency_err_low"], data["latency_err_high"]],
                        fmt="none", ecolor="tab:blue", alpha=0.5, capsize=3)
        for name, row in labelled.iterrows():
            ax.annotate(str(names[name]), (row[cost], row["accuracy"] * 100), textcoords="offset points",
                        xytext=(5, -10) if fronts else (6, -4), fontsize=7 if fronts else 8)
        if log:
            ax.set_xscale("log")
        _readable_axis(ax, log)
        ax.margins(x=0.25)  # room for the labels of the outermost points
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def close_figure(figure) -> None:
    from matplotlib import pyplot as plt

    plt.close(figure)
