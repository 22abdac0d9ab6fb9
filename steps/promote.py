"""Promote step: register the student and move registry aliases through quality gates.

The student is registered as a new version every time this stage runs. It
takes `@champion` only when every gate in params.yaml passes *and* it beats
the current champion, re-evaluated on today's test split (a champion's old
score on old data proves nothing about today). Otherwise it becomes
`@challenger` and the decision names the gates that stopped it. The replaced
champion keeps the alias `previous`.

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
from steps.core import datasets, lineage
from steps.core.dag import LINEAGE_SECTIONS
from steps.core.files import write_json
from steps.core.hashing import sha256
from steps.core.layout import PROMOTION, REPORT, deployable_files, model_files, model_path
from steps.core.names import Alias, Artifact, ModelRole, Tag
from steps.core.results import EvaluateReport
from steps.core.torchkit import load_model
from steps.registry import aliases, artifacts, history
from steps.registry.lock import promotion_lock

BEAT_CHAMPION_GATE = "min_improvement"


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    passed: bool

    @property
    def verdict(self) -> str:
        return f"{'pass' if self.passed else 'fail'} {self.value:.6g} (limit {self.threshold:g})"


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

    @property
    def summary(self) -> str:
        """One line for people and for the flow result: 'promoted: ...' or 'not promoted: <gate>, ...'."""
        if self.promoted:
            return f"promoted: {self.model_name} v{self.version} -> @{self.alias}"
        return f"not promoted: {', '.join(self.failed_gates)} ({self.model_name} v{self.version} -> @{self.alias})"

    def to_dict(self) -> dict:
        return asdict(self) | {"summary": self.summary}


def quality_gates(report: dict, cfg: config.PromoteConfig) -> list[Gate]:
    """The gates that need no registry: accuracy, drop vs the teacher, compression, latency."""
    student, teacher = report["models"][ModelRole.STUDENT], report["models"][ModelRole.TEACHER]
    drop = teacher["accuracy"] - student["accuracy"]
    ratio = student["parameters"] / teacher["parameters"]
    gates = [
        Gate("min_accuracy", student["accuracy"], cfg.min_accuracy, student["accuracy"] >= cfg.min_accuracy),
        Gate("max_accuracy_drop", drop, cfg.max_accuracy_drop, drop <= cfg.max_accuracy_drop),
        Gate("max_param_ratio", ratio, cfg.max_param_ratio, ratio <= cfg.max_param_ratio),
    ]
    if cfg.max_size_ratio is not None:
        size = student["file_bytes"] / teacher["file_bytes"]
        gates.append(Gate("max_size_ratio", size, cfg.max_size_ratio, size <= cfg.max_size_ratio))
    if cfg.max_latency_ms is not None:
        latency = student["latency_p50_ms"]
        gates.append(Gate("max_latency_ms", latency, cfg.max_latency_ms, latency <= cfg.max_latency_ms))
    return gates


def champion_accuracy(model_name: str, x: np.ndarray, y: np.ndarray) -> tuple[int | None, float | None]:
    """The current champion's version and its accuracy on (x, y), loaded through MLflow."""
    current = tracking.alias_version(model_name, Alias.CHAMPION)
    if current is None:
        return None, None
    predict = tracking.load_predictor(model_name, int(current.version)).predict
    logits = np.concatenate([np.asarray(predict(x[i : i + 1024])) for i in range(0, len(x), 1024)])
    return int(current.version), float((logits.argmax(1) == y).mean())


def decide(gates: list[Gate], accuracy: float, incumbent: float | None, min_improvement: float) -> tuple[bool, str]:
    failed = [g for g in gates if not g.passed]
    if failed:
        return False, "failed gate " + ", ".join(f"{g.name} ({g.value:.4f} vs {g.threshold:.4f})" for g in failed)
    if incumbent is None:
        return True, "passed all gates; no champion yet"
    if accuracy - incumbent < min_improvement:
        return False, f"did not beat champion: {accuracy:.4f} vs {incumbent:.4f} (+{min_improvement:.4f} required)"
    return True, f"passed all gates and beat champion: {accuracy:.4f} vs {incumbent:.4f}"


def judge(gates: list[Gate], accuracy: float, model_name: str, version: int, incumbent_version: int | None,
          incumbent_acc: float | None, min_improvement: float) -> Decision:
    """The decision; 'beat the champion' is recorded as one more gate when there is a champion."""
    promoted, reason = decide(gates, accuracy, incumbent_acc, min_improvement)
    if incumbent_acc is not None:
        gain = accuracy - incumbent_acc
        gates = [*gates, Gate(BEAT_CHAMPION_GATE, gain, min_improvement, gain >= min_improvement)]
    alias = Alias.CHAMPION if promoted else Alias.CHALLENGER
    return Decision(model_name, version, promoted, alias.value, reason, accuracy, gates, incumbent_version,
                    incumbent_acc, [g.name for g in gates if not g.passed])


def run(params: config.Params, root: Path) -> Decision:
    cfg = params.promote
    report = EvaluateReport.read(root / REPORT).to_dict()
    accuracy = report["models"][ModelRole.STUDENT]["accuracy"]
    gates = quality_gates(report, cfg)
    test = datasets.load_splits(root, ("test",))["test"]
    x, y = test.x.numpy(), test.y.numpy()
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
        with promotion_lock(cfg.model_name, cfg.lock_timeout_s):
            incumbent_version, incumbent_acc = champion_accuracy(cfg.model_name, x, y)
            decision = judge(gates, accuracy, cfg.model_name, version, incumbent_version, incumbent_acc,
                             cfg.min_improvement)
            record(decision, tags, report)
        gate_values = {f"gate.{g.name}": g.value for g in decision.gates}
        tracking.log_metrics(gate_values | {"promoted": float(decision.promoted)})
        tracking.set_tags(gate_tags(decision.gates))
        tracking.log_dict(decision.to_dict(), "decision.json")
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
    )
    tracking.tag_version(name, version, {
        **aliases.decision_tags("promoted" if decision.promoted else "rejected", decision.reason, event.time,
                                event.trigger),
        **gate_tags(decision.gates),
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
    }


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("promote", run, sys.argv[1:])


if __name__ == "__main__":
    main()
