"""The quality gates that need no registry: accuracy, drop vs the teacher (overall and per class), size,
latency, and the budget's limits. Each is a pure function of metrics/report.json and params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from steps import config
from steps.core import budget, latency
from steps.core.latency import INCONCLUSIVE, PASS
from steps.core.names import ModelRole
from steps.core.stats.classes import ClassDropBound, class_drops_unpaired, worst_of
from steps.registry import comparison

CLASS_GATE = "max_class_drop_pt"


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    passed: bool
    detail: str = ""

    @property
    def verdict(self) -> str:
        text = f"{'pass' if self.passed else 'fail'} {self.value:.6g} (limit {self.threshold:g})"
        return f"{text}: {self.detail}" if self.detail else text


def quality_gates(report: dict, cfg: config.PromoteConfig, class_names: list[str] | None = None,
                  support: list[int] | None = None) -> list[Gate]:
    """The gates that need no registry: accuracy, drop vs the teacher (overall and per class), size, latency."""
    student, teacher = report["models"][ModelRole.STUDENT], report["models"][ModelRole.TEACHER]
    drop = teacher["accuracy"] - student["accuracy"]
    ratio = student["parameters"] / teacher["parameters"]
    gates = [
        Gate("min_accuracy", student["accuracy"], cfg.min_accuracy, student["accuracy"] >= cfg.min_accuracy),
        Gate("max_accuracy_drop", drop, cfg.max_accuracy_drop, drop <= cfg.max_accuracy_drop),
    ]
    if report.get("target"):  # the budget says how small the model must be: it replaces the ratio knob
        gates += budget_gates(report["target"])
    else:
        gates.append(Gate("max_param_ratio", ratio, cfg.max_param_ratio, ratio <= cfg.max_param_ratio))
    if cfg.max_size_ratio is not None:
        size = student["file_bytes"] / teacher["file_bytes"]
        gates.append(Gate("max_size_ratio", size, cfg.max_size_ratio, size <= cfg.max_size_ratio))
    if cfg.max_latency_p95_ms is not None:
        gates.append(latency_gate(student, cfg.max_latency_p95_ms))
    if cfg.max_class_drop_pt is not None and class_names is not None and support is not None:
        gates.append(teacher_class_gate(student, teacher, class_names, support, cfg))
    return gates


def budget_gates(checked: dict) -> list[Gate]:
    """One gate per budget limit (named `target.<limit>`, after params `target:`), on the deployable as
    evaluate re-measured it (report.json's "target"): latency by the whole 95% interval of p95 across its
    timing windows, speedup by the whole interval of its ratio to the teacher timed beside it; a limit the
    interval straddles fails as inconclusive (steps/core/latency.py)."""
    measured, gates = checked["measured"], []
    for key, limit in checked["budget"].items():
        spec = budget.MEASURED.get(key)
        if spec is None:
            continue  # batch_size
        verdict = budget.verdict_of(measured, key, limit)
        detail = _budget_detail(key, measured, checked["budget"]["batch_size"])
        if verdict == INCONCLUSIVE:
            detail += ("; inconclusive: the interval straddles the limit, so the machine's noise decides, not the "
                       "model (re-measure on a quieter machine" +
                       ("" if key == budget.SPEEDUP else ", or give the budget relative to the teacher: "
                        "target.speedup") + ")")
        gates.append(Gate(f"target.{key}", spec.held(measured, upper=True), limit, verdict == PASS, detail))
    return gates


def _budget_detail(key: str, measured: dict, batch_size: int) -> str:
    where = f"{measured['precision']}, batch {batch_size}"
    windows = f" across {measured['windows']} timing windows" if measured.get("windows", 1) > 1 else ""
    if key == budget.LATENCY:
        since = measured.get("machine_vs_search")
        moved = (f"; the teacher's file read {since:.2f}x the p95 it had when the search verified this model"
                 if since else "")
        return (f"{where}: p95 {measured[budget.LATENCY]:.4g} ms, 95% CI [{measured['latency_p95_low_ms']:.4g}, "
                f"{measured['latency_p95_high_ms']:.4g}]{windows}{moved}")
    if key == budget.SPEEDUP:
        drift = latency.drift(measured)
        moved = f"; the teacher's own p95 moved {drift:.2f}x between windows meanwhile" if drift else ""
        return (f"{where}: {measured[budget.SPEEDUP]:.3g}x faster than the teacher's file timed in the same turns "
                f"(ratio of medians), 95% CI [{measured['speedup_low']:.3g}, {measured['speedup_high']:.3g}]"
                f"{windows}{moved}")
    return measured["precision"]


def latency_gate(student: dict, limit_ms: float) -> Gate:
    """p95 within the limit with confidence: the interval's upper end must be. One lucky or unlucky
    p50 decides nothing; with too few repeats for an interval, the slowest call stands in (stricter)."""
    p95, high = student["latency_p95_ms"], student.get("latency_p95_high_ms")
    if high is not None:
        low = student["latency_p95_low_ms"]
        detail = f"p95 {p95:.4g} ms, 95% CI [{low:.4g}, {high:.4g}]"
        if low <= limit_ms < high:
            detail += "; inconclusive: the interval straddles the limit (re-measure on a quiet machine)"
        return Gate("max_latency_p95_ms", high, limit_ms, high <= limit_ms, detail)
    slowest = student.get("latency_max_ms", p95)
    n = student.get("latency_samples", "too few")
    return Gate("max_latency_p95_ms", slowest, limit_ms, slowest <= limit_ms,
                f"p95 {p95:.4g} ms; {n} samples are too few for a 95% interval (72 needed): slowest call used")


def class_gate(name: str, drops: list[ClassDropBound], limit_pt: float, against: str) -> Gate:
    """Refuse when some class's recall drops past the limit beyond noise (its lower bound does); name the worst."""
    worst = worst_of(drops)
    beyond = [d for d in drops if d.drop_low_pt > limit_pt]
    shown = max(beyond, key=lambda d: d.drop_low_pt) if beyond else worst
    detail = (f"worst class vs {against} '{shown.name}' {shown.reference_recall:.1%} -> {shown.candidate_recall:.1%} "
              f"({shown.drop_pt:+.1f} pt drop, at least {shown.drop_low_pt:+.1f} pt, {shown.support} images)")
    return Gate(name, shown.drop_pt, limit_pt, not beyond, detail)


def teacher_class_gate(student: dict, teacher: dict, class_names: list[str], support: list[int],
                       cfg: config.PromoteConfig) -> Gate:
    if "class_recall" not in student or "class_recall" not in teacher:
        return Gate(f"{CLASS_GATE}.teacher", float("nan"), cfg.max_class_drop_pt, False,
                    "metrics/report.json has no class_recall; rerun the evaluate stage")
    drops = class_drops_unpaired([teacher["class_recall"][c] for c in class_names],
                                 [student["class_recall"][c] for c in class_names], support, class_names,
                                 comparison.class_confidence(cfg, sum(n > 0 for n in support)))
    return class_gate(f"{CLASS_GATE}.teacher", drops, cfg.max_class_drop_pt, "the teacher")
