"""The comparison table people read: a pandas frame, a rich table and a Pareto plot."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from steps.names import ModelRole

COLUMNS = {
    "accuracy": "accuracy",
    "parameters": "params",
    "nonzeros": "non-zeros",
    "file_bytes": "size (KB)",
    "compressed_bytes": "zlib size (KB)",
    "macs": "MACs",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
    "speedup": "speedup",
    "peak_memory_bytes": "peak MB",
}


def frame(report: dict) -> pd.DataFrame:
    """One row per model, in pipeline order."""
    order = [role.value for role in ModelRole if role.value in report["models"]]
    rows = [{"model": role, **{k: report["models"][role][k] for k in COLUMNS}} for role in order]
    return pd.DataFrame(rows).set_index("model")


def table(report: dict, promotion: dict | None = None) -> Table:
    title = (f"shrinkflow results (test set, CPU latency at batch {report['latency_batch_size']}, "
             f"{report['threads']} threads)")
    out = Table(title=title)
    out.add_column("model")
    for label in COLUMNS.values():
        out.add_column(label, justify="right")
    for role, row in frame(report).iterrows():
        out.add_row(
            role,
            f"{row['accuracy']:.2%}",
            f"{int(row['parameters']):,}",
            f"{int(row['nonzeros']):,}",
            f"{row['file_bytes'] / 1024:,.0f}",
            f"{row['compressed_bytes'] / 1024:,.0f}",
            f"{row['macs'] / 1e6:.2f}M",
            f"{row['latency_p50_ms']:.2f}",
            f"{row['latency_p95_ms']:.2f}",
            f"{row['speedup']:.2f}x",
            f"{row['peak_memory_bytes'] / 2**20:.1f}",
        )
    if promotion is not None:
        out.caption = promotion_line(promotion)
    return out


def promotion_line(promotion: dict) -> str:
    where = f"{promotion['model_name']} v{promotion['version']}"
    if promotion["promoted"]:
        return f"promoted: {where} -> @{promotion['alias']} ({promotion['reason']})"
    return f"not promoted: {where} -> @{promotion['alias']} ({promotion['reason']})"


def pareto_figure(report: dict):
    """Accuracy against latency and against size: up and left is better on both panels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    data = frame(report)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    panels = (("latency_p50_ms", f"CPU latency p50 (ms, batch {report['latency_batch_size']})", False),
              ("nonzeros", "non-zero parameters", True))
    for ax, (column, label, log) in zip(axes, panels, strict=True):
        ax.scatter(data[column], data["accuracy"] * 100)
        for role, row in data.iterrows():
            ax.annotate(role, (row[column], row["accuracy"] * 100), textcoords="offset points", xytext=(6, -4),
                        fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("shrinkflow: accuracy vs cost")
    fig.tight_layout()
    return fig


def close_figure(figure) -> None:
    from matplotlib import pyplot as plt

    plt.close(figure)
