"""The budget benchmark's report (benchmarks/budget.py): the table of both arms at each budget, the machine's
drift, and the goals of issue 18."""

from __future__ import annotations


def inside(m: dict, limit: float) -> bool:
    return m["p95_high"] <= limit


def interval(m: dict) -> str:
    if "p95_high" in m:  # a side-by-side timing
        return f"{m['p95']:.4g} [{m['p95_low']:.4g}, {m['p95_high']:.4g}]"
    return f"{m['latency_p95_ms']:.4g} [{m['latency_p95_low_ms']:.4g}, {m['latency_p95_high_ms']:.4g}]"


def _inside(m: dict, r: dict) -> str:
    """'yes/NO' against the budget scaled by the machine's drift, then against the budget as set."""
    return (f"{'yes' if inside(m, r['budget_ms'] * r['drift']) else 'NO'} | "
            f"{'yes' if inside(m, r['budget_ms']) else 'NO'}")


def table(out: dict) -> str:
    lines = ["| budget p95 (ms) | batch | model | precision | test accuracy | p95 ms [95% CI], side by side "
             "| inside (budget x drift) | inside (budget as set) | evaluate's p95 [95% CI] | search s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["budgets"]:
        s, h, b, timed = r["search"], r["hand_set"], r["batch"], r["side_by_side"]
        if "unreachable" in s:
            lines.append(f"| {r['budget_ms']:.4g} | {b} | search: refused (no candidate verified inside) | | | | "
                         f"| | | {s['search_s']:.0f} |")
        else:
            m = timed[s["file"]]
            lines.append(f"| {r['budget_ms']:.4g} | {b} | search: {s['widths']} | {s['precision']} | "
                         f"{s['accuracy']:.2%} | {interval(m)} | {_inside(m, r)} | "
                         f"{interval(s['evaluate'])} | {s['search_s']:.0f} ({s['settings_measured']} settings) |")
        if h is None:
            lines.append(f"| {r['budget_ms']:.4g} | {b} | hand-set: none inside | | | | | | | |")
        else:
            lines.append(f"| {r['budget_ms']:.4g} | {b} | hand-set: {h['model']} | {h['precision']} | "
                         f"{h['accuracy']:.2%} | {interval(timed[h['file']])} | {_inside(timed[h['file']], r)} "
                         "| | |")
    return "\n".join(lines)


def drifts(out: dict) -> list[str]:
    seen, lines = set(), []
    for r in out["budgets"]:
        if r["batch"] not in seen:
            seen.add(r["batch"])
            lines.append(f"- batch {r['batch']}: the teacher's p95 in the side-by-side is {r['drift']:.2f}x its p95 "
                         "when the budgets were set from it")
    return lines


def goals(out: dict) -> list[str]:
    lines = []
    for r in out["budgets"]:
        s, h, gap = r["search"], r["hand_set"], r.get("gap")
        ok = "unreachable" not in s and inside(r["side_by_side"][s["file"]], r["budget_ms"] * r["drift"])
        as_good = ok and (h is None or gap["high"] >= 0)
        versus = (f" ({s['accuracy']:.2%} vs {h['accuracy']:.2%}: {gap['points'] * 100:+.2f} pt, paired 95% CI "
                  f"[{gap['low'] * 100:+.2f}, {gap['high'] * 100:+.2f}])" if gap else "")
        lines.append(f"- {r['budget_ms']:.4g} ms at batch {r['batch']}: inside the budget (x drift) by measurement "
                     f"{'met' if ok else 'NOT met'}; at least as accurate as the best hand-set inside (not worse "
                     f"beyond noise: the interval reaches 0) {'met' if as_good else 'NOT met'}{versus}")
    return lines


def text(out: dict) -> str:
    """The whole report: the teacher, the table, the drift, the goals."""
    teacher = (f"Teacher test accuracy {out['teacher_accuracy']:.2%}, teacher fp32 p95 "
               + ", ".join(f"batch {b}: {interval(m)} ms" for b, m in out["teacher"].items())
               + f"; hand-set models trained and measured in {out['hand_set_s']:.0f} s.\n\n")
    return (teacher + table(out) + "\n\nThe machine's drift (budgets x drift judge both arms alike):\n\n"
            + "\n".join(drifts(out)) + "\n\nGoals (issue 18):\n\n" + "\n".join(goals(out)) + "\n")
