"""Promote step: register the student and move registry aliases through quality gates.

The student is registered as a new version every time this stage runs. It
takes `@champion` only when every gate in params.yaml passes *and* a paired
comparison with the current champion on today's test split says so (a
champion's old score on old data proves nothing about today; a 0.1 pt "win" on
10,000 images is inside chance): better at `promote.significance` (one-sided
McNemar on the images they disagree on, and a bootstrap interval of the
accuracy difference above 0), or not worse by more than
`promote.non_inferiority_pt` and smaller or faster. No class's recall may drop
past `promote.max_class_drop_pt` against the champion or the teacher, beyond
noise. Otherwise it becomes `@challenger` and the decision names the gates that
stopped it, the worst class and the test statistics. The replaced champion
keeps the alias `previous`.

Order matters for failures: everything that can fail (loading, registering,
re-evaluating the champion) happens before any alias moves, so a crash leaves
`@champion` where it was. The read-decide-move sequence runs under the
registry lock, and every decision is appended to the promotion history
(steps/registry/), so two pipelines finishing at once are decided one after
the other, each against the champion the other left.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from steps import config, storage, tracking
from steps.core import budget, datasets, lineage, stats
from steps.core.dag import LINEAGE_SECTIONS
from steps.core.files import write_json
from steps.core.hashing import sha256
from steps.core.layout import PROMOTION, REPORT, deployable_files, metrics_path, model_files, model_path
from steps.core.names import Alias, Artifact, ModelRole, Tag
from steps.core.results import EvaluateReport, TeacherResult
from steps.core.torchkit import load_model
from steps.registry import aliases, artifacts, comparison, history
from steps.registry.lock import promotion_lock

BEAT_CHAMPION_GATE = "beat_champion"
CLASS_GATE = "max_class_drop_pt"
COST_METRICS = ("parameters", "file_bytes", "latency_p95_low_ms", "latency_p95_high_ms")
"""Logged in the promote run as candidate.<key>: what 'smaller or faster' reads of a later champion."""


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


@dataclass(frozen=True)
class Candidate:
    """The student being decided: its registered version and its row of metrics/report.json."""

    model_name: str
    version: int
    metrics: dict

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


@dataclass(frozen=True)
class Incumbent:
    """The champion at decision time, re-scored against the candidate on today's test split."""

    version: int
    metrics: dict  # its promote run's candidate.* cost metrics (COST_METRICS), where recorded
    comparison: stats.PairedComparison
    worst_class: stats.ClassDropBound
    class_drops: list[stats.ClassDropBound] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.comparison.champion_accuracy


@dataclass(frozen=True)
class Decision:
    """What happened to one candidate, and why; written to metrics/promotion.json."""

    model_name: str
    version: int
    promoted: bool
    alias: str
    reason: str
    accuracy: float
    gates: list[Gate] = field(default_factory=list)
    incumbent_version: int | None = None
    incumbent_accuracy: float | None = None
    failed_gates: list[str] = field(default_factory=list)
    basis: str = ""
    """Why it took @champion: 'no champion', 'better' or 'non_inferior and smaller/faster (...)'; '' if it did not."""
    statistics: dict = field(default_factory=dict)
    """The paired test vs the champion (comparison.statistics, with its worst class); {} without a champion.
    The worst class vs the teacher is in the max_class_drop_pt.teacher gate's verdict."""

    @property
    def summary(self) -> str:
        """One line for people and for the flow result: 'promoted: ...' or 'not promoted: <gate>, ...'."""
        if self.promoted:
            return f"promoted: {self.model_name} v{self.version} -> @{self.alias}"
        return f"not promoted: {', '.join(self.failed_gates)} ({self.model_name} v{self.version} -> @{self.alias})"

    def to_dict(self) -> dict:
        return asdict(self) | {"summary": self.summary}


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
        gates += target_gates(report["target"])
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


def target_gates(target: dict) -> list[Gate]:
    """One gate per budget limit, on the deployable as evaluate re-measured it (latency: the upper end of the
    p95 interval at the budget's batch size)."""
    measured, gates = target["measured"], []
    for key, limit in target["budget"].items():
        if key not in budget.MEASURED:
            continue  # batch_size
        value = measured[budget.MEASURED[key]]
        detail = (f"{measured['precision']}, batch {target['budget']['batch_size']}: p95 "
                  f"{measured[budget.LATENCY]:.4g} ms, 95% CI [{measured['latency_p95_low_ms']:.4g}, {value:.4g}]"
                  if key == budget.LATENCY else measured["precision"])
        gates.append(Gate(f"target.{key}", value, limit, value <= limit, detail))
    return gates


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


def class_gate(name: str, drops: list[stats.ClassDropBound], limit_pt: float, against: str) -> Gate:
    """Refuse when some class's recall drops past the limit beyond noise (its lower bound does); name the worst."""
    worst = stats.worst_of(drops)
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
    drops = stats.class_drops_unpaired([teacher["class_recall"][c] for c in class_names],
                                       [student["class_recall"][c] for c in class_names], support, class_names,
                                       comparison.class_confidence(cfg, sum(n > 0 for n in support)))
    return class_gate(f"{CLASS_GATE}.teacher", drops, cfg.max_class_drop_pt, "the teacher")


def advantage(candidate: Candidate, incumbent: Incumbent) -> str | None:
    """'smaller ...' or 'faster ...' when the candidate is, else None. Faster means the p95 intervals do
    not overlap (each measured in its own evaluate run, so only a clear gap counts)."""
    mine, theirs = candidate.metrics, incumbent.metrics
    for key, what in (("parameters", "parameters"), ("file_bytes", "file bytes")):
        if key in theirs and mine[key] < theirs[key]:
            return f"smaller: {mine[key]:,.0f} vs {theirs[key]:,.0f} {what}"
    high, low = mine.get("latency_p95_high_ms"), theirs.get("latency_p95_low_ms")
    if high is not None and low is not None and high < low:
        return f"faster: p95 interval ends at {high:.4g} ms, the champion's starts at {low:.4g} ms"
    return None


def champion_gates(candidate: Candidate, incumbent: Incumbent, cfg: config.PromoteConfig) -> tuple[list[Gate], str]:
    """The paired comparison as gates (beat_champion; per class vs the champion) and the basis it passed on."""
    result, basis = incumbent.comparison, ""
    if result.verdict == stats.Verdict.BETTER:
        basis = str(stats.Verdict.BETTER)
    elif result.verdict == stats.Verdict.NON_INFERIOR:
        edge = advantage(candidate, incumbent)
        basis = f"{stats.Verdict.NON_INFERIOR} and {edge}" if edge else ""
    threshold = 0.0 if cfg.non_inferiority_pt is None else -cfg.non_inferiority_pt
    detail = result.reason if basis or result.verdict != stats.Verdict.NON_INFERIOR else \
        f"{result.reason}; but neither smaller nor faster"
    gates = [Gate(BEAT_CHAMPION_GATE, result.difference.low * 100, threshold, bool(basis), detail)]
    if cfg.max_class_drop_pt is not None:
        gates.append(class_gate(f"{CLASS_GATE}.champion", incumbent.class_drops, cfg.max_class_drop_pt,
                                "the champion"))
    return gates, basis


def decide(gates: list[Gate], incumbent: Incumbent | None, basis: str) -> tuple[bool, str]:
    """(promoted, reason): the quality gates first, then the champion's; the reason states the evidence."""
    failed = [g for g in gates if not g.passed and g.name != BEAT_CHAMPION_GATE]
    if failed:
        return False, "failed gate " + ", ".join(
            f"{g.name} ({g.value:.4f} vs {g.threshold:.4f}{'; ' + g.detail if g.detail else ''})" for g in failed)
    if incumbent is None:
        return True, "passed all gates; no champion yet"
    evidence = f"{incumbent.comparison.challenger_accuracy:.4f} vs {incumbent.accuracy:.4f}"
    if not basis:
        beat = next(g for g in gates if g.name == BEAT_CHAMPION_GATE)
        return False, f"did not beat champion v{incumbent.version}: {evidence}; {beat.detail}"
    return True, (f"passed all gates and took @champion from v{incumbent.version} as {basis}: {evidence}; "
                  f"{incumbent.comparison.reason}")


def judge(gates: list[Gate], candidate: Candidate, incumbent: Incumbent | None,
          cfg: config.PromoteConfig) -> Decision:
    """The decision; the champion comparison adds its gates when there is a champion."""
    basis = "no champion"
    statistics = {}
    if incumbent is not None:
        extra, basis = champion_gates(candidate, incumbent, cfg)
        gates = [*gates, *extra]
        statistics = comparison.statistics(incumbent.comparison, incumbent.worst_class)
    promoted, reason = decide(gates, incumbent, basis)
    alias = Alias.CHAMPION if promoted else Alias.CHALLENGER
    return Decision(candidate.model_name, candidate.version, promoted, alias.value, reason, candidate.accuracy, gates,
                    None if incumbent is None else incumbent.version,
                    None if incumbent is None else incumbent.accuracy,
                    [g.name for g in gates if not g.passed], basis if promoted else "", statistics)


def incumbent_now(candidate: Candidate, x: np.ndarray, y: np.ndarray, class_names: list[str],
                  cfg: config.PromoteConfig) -> Incumbent | None:
    """The current champion scored beside the candidate on (x, y), both through the registry; None if none."""
    current = tracking.alias_version(candidate.model_name, Alias.CHAMPION)
    if current is None:
        return None
    version = int(current.version)
    champion = comparison.served_labels(candidate.model_name, version, x)
    challenger = comparison.served_labels(candidate.model_name, candidate.version, x)
    result = comparison.compare(y, champion, challenger, class_names, cfg)
    drops = comparison.class_drops(y, champion, challenger, class_names, cfg)
    return Incumbent(version, champion_costs(current), result, stats.worst_of(drops), drops)


def champion_costs(version) -> dict:
    """The champion's size and latency interval, as its promote run logged them ({} for older versions)."""
    run_id = dict(version.tags).get(Tag.PROMOTE_RUN)
    if not run_id:
        return {}
    logged = tracking.run_record(run_id).data.metrics
    return {key: logged[f"candidate.{key}"] for key in COST_METRICS if f"candidate.{key}" in logged}


def run(params: config.Params, root: Path) -> Decision:
    cfg = params.promote
    report = EvaluateReport.read(root / REPORT).to_dict()
    test = datasets.load_splits(root, ("test",))["test"]
    x, y = test.x.numpy(), test.y.numpy()
    class_names = list(datasets.read_manifest(root)["classes"])
    support = np.bincount(y, minlength=len(class_names)).tolist()
    gates = quality_gates(report, cfg, class_names, support)
    student, _ = load_model(root, ModelRole.STUDENT)
    with tracking.open_run(root, **lineage.stage_run(root, params, "promote")) as run_id:
        # the audit rebuilds and re-measures from these
        tracking.log_files([root / f for f in model_files(ModelRole.STUDENT)], Artifact.MODEL_FILES)
        tracking.log_dict(params.model_dump(mode="json"), "params.json")  # the audit compares params.yaml to it
        version = tracking.register(student, x[:2], cfg.model_name)
        # Deployable ONNX files (issue 9): logged with this version, sha256 of each as a version tag.
        tracking.log_deployable(cfg.model_name, version, *deployable_files(root))
        digests = artifacts.artifact_digests(cfg.model_name, version, run_id)
        tracking.log_dict(digests, "artifacts.json")
        tags = lineage_tags(root, params, report, run_id) | {Tag.ARTIFACTS_SHA256: artifacts.digest_of(digests)}
        tracking.tag_version(cfg.model_name, version, tags)
        candidate = Candidate(cfg.model_name, version, report["models"][ModelRole.STUDENT])
        costs = {f"candidate.{k}": candidate.metrics[k] for k in COST_METRICS if candidate.metrics.get(k) is not None}
        tracking.log_metrics(costs)  # what a later challenger's 'smaller or faster' compares with
        with promotion_lock(cfg.model_name, cfg.lock_timeout_s):
            incumbent = incumbent_now(candidate, x, y, class_names, cfg)
            decision = judge(gates, candidate, incumbent, cfg)
            record(decision, tags, report)
        gate_values = {f"gate.{g.name}": g.value for g in decision.gates}
        stat_values = {f"stat.{k}": float(v) for k, v in decision.statistics.items() if not isinstance(v, str)}
        tracking.log_metrics(gate_values | stat_values | {"promoted": float(decision.promoted)})
        tracking.set_tags(gate_tags(decision.gates))
        tracking.log_dict(decision.to_dict(), "decision.json")  # the audit recomputes the statistics from it
    write_json(root / PROMOTION, decision.to_dict())
    return decision


def gate_tags(gates: list[Gate]) -> dict[str, str]:
    return {f"{Tag.GATE}.{g.name}": g.verdict for g in gates}


def record(decision: Decision, lineage: dict[str, str], report: dict) -> None:
    """Move the aliases, tag the version with the decision and its gates, append to the history (under the lock)."""
    name, version = decision.model_name, decision.version
    if decision.promoted:
        moves = aliases.take_champion(name, version)
    else:
        moves = aliases.become_challenger(name, version)
    event = history.Event(
        name, "promoted" if decision.promoted else "rejected", version, decision.reason, decision.incumbent_version,
        version if decision.promoted else decision.incumbent_version, moves,
        gates={g.name: g.verdict for g in decision.gates},
        metrics={f"candidate.{k}": v for k, v in report["models"][ModelRole.STUDENT].items()
                 if isinstance(v, int | float)} | ({"champion.accuracy": decision.incumbent_accuracy}
                                                   if decision.incumbent_accuracy is not None else {}),
        lineage={k: v for k, v in lineage.items() if k in LINEAGE_KEYS},
        statistics=decision.statistics,
    )
    tracking.tag_version(name, version, {
        **aliases.decision_tags("promoted" if decision.promoted else "rejected", decision.reason, event.time,
                                event.trigger),
        **gate_tags(decision.gates),
        **history.statistics_tags(decision.statistics),
    })
    history.record(event)


LINEAGE_KEYS = (Tag.GIT_COMMIT, Tag.GIT_DIRTY, Tag.DATA_HASH, Tag.PARAMS_HASH, Tag.MODEL_SHA256, Tag.PROMOTE_RUN)


def lineage_tags(root: Path, params: config.Params, report: dict, run_id: str) -> dict[str, str]:
    """What an auditor needs to re-prove this version."""
    return {
        **lineage.code_tags(root),
        Tag.DATA_HASH: storage.data_hash(root) or "unrecorded",
        Tag.PARAMS_HASH: params.section_hash(*LINEAGE_SECTIONS),
        Tag.MODEL_SHA256: sha256(root / model_path(ModelRole.STUDENT)),
        Tag.PROMOTE_RUN: run_id,
        Tag.EVALUATE_RUN: report.get("mlflow_run_id", "unrecorded"),
        Tag.ACCURACY: f"{report['models'][ModelRole.STUDENT]['accuracy']:.6f}",
        **teacher_init_tags(root),
        **{f"{Tag.TARGET}.{k}": f"{v:g}" for k, v in ((report.get("target") or {}).get("budget") or {}).items()},
    }


def teacher_init_tags(root: Path) -> dict[str, str]:
    """Where the teacher started from (teacher.init), as the teacher stage recorded it; none when trained
    from scratch. Not a declared input of promote: a new init changes the teacher and so the student."""
    path = root / metrics_path("teacher")
    teacher = TeacherResult.read(path) if path.is_file() else None
    if teacher is None or not teacher.init_uri:
        return {}
    return {Tag.TEACHER_INIT: teacher.init_uri, Tag.TEACHER_INIT_SHA256: teacher.init_sha256}


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("promote", run, sys.argv[1:])

