"""The decision: the candidate against the gates and, when there is one, against the champion.

Pure: it reads the gates, the candidate's metrics and the champion's paired comparison, and moves nothing
(steps/promote/__init__.py records the decision and moves the aliases).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from steps import config
from steps.core.names import Alias
from steps.core.stats.classes import ClassDropBound, worst_of
from steps.core.stats.paired import PairedComparison, Verdict
from steps.promote.gates import CLASS_GATE, Gate, class_gate
from steps.registry import comparison

BEAT_CHAMPION_GATE = "beat_champion"


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """The student being decided: its registered version and its row of metrics/report.json."""

    model_name: str
    version: int
    metrics: dict

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


@dataclass(frozen=True, kw_only=True)
class Incumbent:
    """The champion at decision time, re-scored against the candidate on today's test split."""

    version: int
    metrics: dict
    """Its promote run's candidate.* cost metrics (COST_METRICS), where recorded."""
    comparison: PairedComparison
    class_drops: list[ClassDropBound]
    """Each class's recall drop from the champion to the candidate, with its bound."""

    @property
    def accuracy(self) -> float:
        return self.comparison.champion_accuracy

    @property
    def worst_class(self) -> ClassDropBound:
        return worst_of(self.class_drops)


@dataclass(frozen=True, kw_only=True)
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


def advantage(mine: dict, theirs: dict) -> str | None:
    """'smaller ...' or 'faster ...' when the candidate (its metrics `mine`) is, against the champion's cost metrics
    (`theirs`), else None. Faster means the p95 intervals do not overlap (each measured in its own evaluate run,
    so only a clear gap counts)."""
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
    if result.verdict == Verdict.BETTER:
        basis = str(Verdict.BETTER)
    elif result.verdict == Verdict.NON_INFERIOR:
        edge = advantage(candidate.metrics, incumbent.metrics)
        basis = f"{Verdict.NON_INFERIOR} and {edge}" if edge else ""
    threshold = 0.0 if cfg.non_inferiority_pt is None else -cfg.non_inferiority_pt
    detail = result.reason if basis or result.verdict != Verdict.NON_INFERIOR else \
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
    return Decision(
        model_name=candidate.model_name, version=candidate.version, promoted=promoted,
        alias=(Alias.CHAMPION if promoted else Alias.CHALLENGER).value, reason=reason, accuracy=candidate.accuracy,
        gates=gates, failed_gates=[g.name for g in gates if not g.passed], basis=basis if promoted else "",
        incumbent_version=None if incumbent is None else incumbent.version,
        incumbent_accuracy=None if incumbent is None else incumbent.accuracy, statistics=statistics,
    )
