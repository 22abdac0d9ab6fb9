"""The two figures a person reads after a budget search: the sensitivity heat-map and the frontier.

The frontier: every width setting the search measured, predicted accuracy against the budgeted cost
(the upper end of the p95 interval for a latency budget, the lower end of the speedup's for a relative one), one colour per precision, the budget as a
dashed line, the verified candidates and the chosen model marked with their fine-tuned accuracy.
"""

from __future__ import annotations

from steps.core.budget import LATENCY, MEASURED, SPEEDUP
from steps.core.reports import close_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def sensitivity_figure(outcome):
    """Layers down, kept fraction across; each cell the validation accuracy lost (pt) with that layer alone cut."""
    plt = _pyplot()
    full = outcome.layer_widths
    layers = list(full)
    cells = {layer: {round(w / full[layer], 2): d * 100 for w, d in outcome.sensitivity[layer].items()}
             for layer in layers}
    fractions = sorted({f for row in cells.values() for f in row}, reverse=True)
    grid = [[cells[layer].get(f, float("nan")) for f in fractions] for layer in layers]
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(fractions), 1.2 + 0.5 * len(layers)))
    image = ax.imshow(grid, cmap="magma_r", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN: the layer has this width
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8, color="tab:cyan")
    ax.set_xticks(range(len(fractions)), [f"{f:.0%}" for f in fractions])
    ax.set_yticks(range(len(layers)), [f"{layer} ({full[layer]})" for layer in layers])
    ax.set_xlabel("channels kept (of the layer's own)")
    fig.colorbar(image, ax=ax, label="val accuracy lost (pt)")
    ax.set_title("sensitivity: one layer cut, no fine-tuning")
    fig.tight_layout()
    return fig


def frontier_figure(outcome):
    plt = _pyplot()
    key = next(iter(k for k in outcome.budget if k in MEASURED), LATENCY)

    def value(point: dict) -> float:
        return MEASURED[key].held(point, upper=True)

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for precision in sorted({p["precision"] for p in outcome.frontier}):
        points = [p for p in outcome.frontier if p["precision"] == precision]
        ax.scatter([value(p) for p in points], [p["predicted_accuracy"] * 100 for p in points], s=18, alpha=0.7,
                   label=f"{precision}: searched (predicted accuracy)")
    for c in outcome.candidates:
        chosen = c["candidate"] == outcome.chosen["candidate"]
        ax.scatter([value(c)], [c["val_accuracy"] * 100], marker="*" if chosen else "D", s=160 if chosen else 50,
                   color="tab:red" if chosen else "tab:green", zorder=3)
        widths = "/".join(str(c["widths"][layer]) for layer in outcome.layer_widths)
        label = f"{'chosen ' if chosen else ''}{c['precision']} {c.get('origin', 'greedy')} {widths}"
        ax.annotate(label, (value(c), c["val_accuracy"] * 100), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    if outcome.budget.get(key) is not None:
        ax.axvline(outcome.budget[key], color="tab:red", linestyle="--",
                   label=f"budget {key} = {outcome.budget[key]:g}")
    batch = outcome.budget.get("batch_size", 1)
    ax.set_xlabel(f"latency p95, upper end of its 95% interval (ms, batch {batch})" if key == LATENCY else
                  f"speedup over the teacher, lower end of its 95% interval (batch {batch})" if key == SPEEDUP else key)
    ax.set_ylabel("val accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("budget search: measured settings, verified candidates (diamonds), chosen (star)")
    fig.tight_layout()
    return fig


def close(figure) -> None:
    close_figure(figure)
