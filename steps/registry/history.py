"""The promotion history: every registry decision, appended, never edited.

One finished MLflow run per event in the experiment `HISTORY_EXPERIMENT`, tagged with the model
name and a sequence number. It lives in the tracking backend (SQLite file or the server's
database), so it survives server restarts and is visible to every client; each event names the
one before it (`prev`), so a gap shows. Append under the registry lock, which orders the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from steps import tracking
from steps.core.names import STATISTIC_TAG, Tag
from steps.registry.lock import this_process

HISTORY_EXPERIMENT = "shrinkflow-promotion-history"


def version_str(v: int | None) -> str:
    return "none" if v is None else str(v)


@dataclass(frozen=True, kw_only=True)
class Event:
    """One registry decision: what moved where, and why."""

    model_name: str
    kind: str  # promoted | rejected | rollback | forced
    version: int
    reason: str
    champion_before: int | None
    champion_after: int | None
    moves: list[str] = field(default_factory=list)  # e.g. "champion: 1 -> 2"
    gates: dict[str, str] = field(default_factory=dict)  # name -> "pass 0.91 (limit 0.88)"
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)  # git commit, data hash, params hash, ...
    statistics: dict = field(default_factory=dict)  # the paired test vs the champion (registry/comparison.py)
    trigger: str = field(default_factory=this_process)  # what started it: a schedule, a person at the CLI, ...
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


def statistics_tags(statistics: dict) -> dict[str, str]:
    """Tags of the decision's statistics: numbers to 6 significant digits (the audit compares at that
    precision), names as they are."""
    return {f"{STATISTIC_TAG}.{k}": (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in statistics.items()}


def record(event: Event) -> str:
    """Append `event` to the history (call under the lock, which orders the sequence numbers)."""
    past = events(event.model_name)
    seq = len(past) + 1
    tags = {
        Tag.HISTORY_MODEL: event.model_name,
        Tag.HISTORY_SEQ: str(seq),
        Tag.HISTORY_PREV: past[-1]["run_id"] if past else "none",
        Tag.HISTORY_EVENT: event.kind,
        Tag.HISTORY_VERSION: str(event.version),
        Tag.HISTORY_CHAMPION_BEFORE: version_str(event.champion_before),
        Tag.HISTORY_CHAMPION_AFTER: version_str(event.champion_after),
        Tag.REASON: event.reason[:4000],
        Tag.TRIGGER: event.trigger,
        Tag.MOVES: "; ".join(event.moves) or "none",
        Tag.TIME: event.time,
        **{f"{Tag.GATE}.{k}": v for k, v in event.gates.items()},
        **statistics_tags(event.statistics),
        **event.lineage,
    }
    document = {"seq": seq, **event.__dict__}
    return tracking.record_event(HISTORY_EXPERIMENT, f"{event.model_name}#{seq} {event.kind} v{event.version}",
                                 tags, event.metrics, document)


def events(model_name: str) -> list[dict]:
    """The history of `model_name`, in order: one dict per event."""
    runs = tracking.search_events(HISTORY_EXPERIMENT, f"tags.`{Tag.HISTORY_MODEL}` = '{model_name}'")
    out = []
    for run in runs:
        t = run.data.tags
        out.append({
            "seq": int(t[Tag.HISTORY_SEQ]), "time": t.get(Tag.TIME, ""), "event": t[Tag.HISTORY_EVENT],
            "version": int(t[Tag.HISTORY_VERSION]), "champion_before": t[Tag.HISTORY_CHAMPION_BEFORE],
            "champion_after": t[Tag.HISTORY_CHAMPION_AFTER], "moves": t.get(Tag.MOVES, ""),
            "reason": t.get(Tag.REASON, ""), "trigger": t.get(Tag.TRIGGER, ""), "prev": t.get(Tag.HISTORY_PREV),
            "run_id": run.info.run_id,
            "statistics": {k.removeprefix(f"{STATISTIC_TAG}."): v for k, v in t.items()
                           if k.startswith(f"{STATISTIC_TAG}.")},
        })
    return sorted(out, key=lambda e: e["seq"])
