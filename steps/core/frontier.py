"""A sweep's results: which models are Pareto-optimal (accuracy vs latency, accuracy vs size), as a table and a plot."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from steps.core.reports import pareto_figure

FRONTS = {"latency_p50_ms": "latency_front", "nonzeros": "size_front"}
"""Cost column -> the column that marks the models on its frontier. Size is non-zero parameters: after
unstructured pruning the dense file keeps its zeros, and non-zeros is what a sparse format stores."""


def pareto_mask(cost: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other model is at least as accurate and at most as costly, and better on one of the two."""
    on_front = []
    for i in cost.index:
        dominated = ((accuracy >= accuracy[i]) & (cost <= cost[i]) & ((accuracy > accuracy[i]) | (cost < cost[i])))
        on_front.append(not dominated.any())
    return pd.Series(on_front, index=cost.index)


def frontier_frame(measured: dict[str, dict], members: dict[str, dict]) -> pd.DataFrame:
    """One row per measured model; `members` maps a model's name to its member and overrides label.

    The reference models (the shared teacher) are rows too, so the frontier shows what compression buys.
    """
    rows = [{"model": name, "member": members.get(name, {}).get("member", "-"),
             "settings": members.get(name, {}).get("label", "shared teacher"), **m} for name, m in measured.items()]
    data = pd.DataFrame(rows).set_index("model")
    for cost, flag in FRONTS.items():
        data[flag] = pareto_mask(data[cost], data["accuracy"])
    return data.sort_values("accuracy", ascending=False)


def table(data: pd.DataFrame, title: str) -> Table:
    out = Table(title=title)
    for column in ("model", "settings", "accuracy", "non-zeros", "zlib KB", "p50 ms", "speedup", "frontier"):
        out.add_column(column, justify="left" if column in ("model", "settings", "frontier") else "right")
    for name, row in data.iterrows():
        fronts = [label for flag, label in (("latency_front", "latency"), ("size_front", "size")) if row[flag]]
        out.add_row(name, row["settings"], f"{row['accuracy']:.2%}", f"{int(row['nonzeros']):,}",
                    f"{row['compressed_bytes'] / 1024:,.0f}", f"{row['latency_p50_ms']:.2f}",
                    f"{row['speedup']:.2f}x", " + ".join(fronts) or "-",
                    style="bold" if fronts else None)
    return out


def figure(data: pd.DataFrame, latency_batch_size: int):
    """Accuracy against latency and against size; each panel's frontier drawn as a step line."""
    return pareto_figure(data, f"CPU latency p50 (ms, batch {latency_batch_size})",
                         "shrinkflow sweep: Pareto frontier (red), up and left is better", FRONTS)
