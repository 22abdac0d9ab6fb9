"""Promote step: register the student and move registry aliases through quality gates.

The student is registered as a new version every time this stage runs. It
takes `@champion` only when every gate in params.yaml passes *and* it beats
the current champion, re-evaluated on today's test split (a champion's old
score on old data proves nothing about today). Otherwise it becomes
`@challenger` and the decision says which gate stopped it. The replaced
champion keeps the alias `previous`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from steps import config, lineage, quantize, storage, tracking
from steps.compression import checkpoint
from steps.data import load_splits
from steps.hashing import sha256
from steps.names import Alias, ModelRole, Tag
from steps.pipeline import PROMOTION, REPORT, model_path
from steps.steputil import load_model

PREVIOUS_ALIAS = "previous"


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    passed: bool


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

    def to_dict(self) -> dict:
        return asdict(self)


def quality_gates(report: dict, cfg: config.PromoteConfig) -> list[Gate]:
    student, teacher = report["models"][ModelRole.STUDENT], report["models"][ModelRole.TEACHER]
    drop = teacher["accuracy"] - student["accuracy"]
    ratio = student["parameters"] / teacher["parameters"]
    return [
        Gate("min_accuracy", student["accuracy"], cfg.min_accuracy, student["accuracy"] >= cfg.min_accuracy),
        Gate("max_accuracy_drop", drop, cfg.max_accuracy_drop, drop <= cfg.max_accuracy_drop),
        Gate("max_param_ratio", ratio, cfg.max_param_ratio, ratio <= cfg.max_param_ratio),
    ]


def champion_accuracy(model_name: str, x: np.ndarray, y: np.ndarray) -> tuple[int | None, float | None]:
    """The current champion's version and its accuracy on (x, y), loaded through MLflow."""
    import mlflow

    current = tracking.alias_version(model_name, Alias.CHAMPION)
    if current is None:
        return None, None
    predict = mlflow.pyfunc.load_model(f"models:/{model_name}@{Alias.CHAMPION}").predict
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


def run(params: config.Params, root: Path) -> dict:
    cfg = params.promote
    report = json.loads((root / REPORT).read_text())
    accuracy = report["models"][ModelRole.STUDENT]["accuracy"]
    gates = quality_gates(report, cfg)
    test = load_splits(root, ("test",))["test"]
    x, y = test.x.numpy(), test.y.numpy()
    student, _ = load_model(root, ModelRole.STUDENT)
    with tracking.stage_run(root, params, "promote") as run_id:
        incumbent_version, incumbent_acc = champion_accuracy(cfg.model_name, x, y)
        version = tracking.log_registered_model(student, x[:2], cfg.model_name)
        # Deployable ONNX files (issue 9): logged with this version, sha256 of each as a version tag.
        tracking.log_deployable(root, cfg.model_name, version, *quantize.deployable_files(root))
        promoted, reason = decide(gates, accuracy, incumbent_acc, cfg.min_improvement)
        alias = Alias.CHAMPION if promoted else Alias.CHALLENGER
        decision = Decision(cfg.model_name, version, promoted, alias.value, reason, accuracy, gates,
                            incumbent_version, incumbent_acc)
        tracking.tag_version(cfg.model_name, version, lineage_tags(root, params, decision, run_id))
        if promoted and incumbent_version is not None:
            tracking.set_alias(cfg.model_name, PREVIOUS_ALIAS, incumbent_version)
        tracking.set_alias(cfg.model_name, alias, version)
        tracking.log_metrics({f"gate.{g.name}": g.value for g in gates} | {"promoted": float(promoted)})
        tracking.log_dict(decision.to_dict(), "decision.json")
    checkpoint.write_json(root / PROMOTION, decision.to_dict())
    return decision.to_dict()


def lineage_tags(root: Path, params: config.Params, decision: Decision, run_id: str) -> dict[str, str]:
    """What an auditor needs to re-prove this version."""
    return {
        Tag.GIT_COMMIT: lineage.git_commit(root),
        Tag.GIT_DIRTY: str(lineage.git_dirty(root)).lower(),
        Tag.DATA_HASH: storage.data_hash(root) or "unrecorded",
        Tag.PARAMS_HASH: params.section_hash(),
        Tag.MODEL_SHA256: sha256(root / model_path(ModelRole.STUDENT)),
        Tag.DECISION: "promoted" if decision.promoted else "rejected",
        Tag.REASON: decision.reason,
        "shrinkflow.accuracy": f"{decision.accuracy:.6f}",
        "shrinkflow.promote_run": run_id,
        **{f"shrinkflow.gate.{g.name}": f"{'pass' if g.passed else 'fail'} {g.value:.6f} (limit {g.threshold})"
           for g in decision.gates},
    }


def main() -> None:
    from steps.stage_main import run_stage_main

    run_stage_main("promote", run, sys.argv[1:])


if __name__ == "__main__":
    main()
