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

import logging
import sys
from pathlib import Path

import numpy as np

from steps import config, storage, tracking
from steps.core import datasets, lineage
from steps.core.dag import LINEAGE_SECTIONS
from steps.core.files import write_json
from steps.core.hashing import sha256, weights_sha256
from steps.core.layout import (
    PROMOTION,
    REPORT,
    deployable_files,
    metrics_path,
    model_dir,
    model_files,
    model_weights,
    onnx_path,
)
from steps.core.names import Artifact, ModelRole, Tag
from steps.core.results import EvaluateReport, QuantizeResult, TeacherResult
from steps.core.torchkit import load_model
from steps.promote.champion import comparable_costs, cost_metrics, incumbent_now
from steps.promote.contracts import check_same_task
from steps.promote.decision import Candidate, Decision, judge
from steps.promote.gates import Gate, quality_gates
from steps.registry import aliases, artifacts, comparison, history
from steps.registry.comparison import ScoredSplit
from steps.registry.lock import promotion_lock, this_process


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> Decision:
    if datasets.task(datasets.read_manifest(root)) == "causal_lm":
        from steps.promote import language  # imports this module's recording functions

        return language.run(params, root, origin)
    cfg = params.promote
    report = EvaluateReport.read(root / REPORT).to_dict()
    manifest, contract = datasets.read_manifest(root), datasets.contract(root)
    name = cfg.resolved_model_name(manifest)
    test = comparison.test_split(root)
    class_names = list(contract.classes)
    support = np.bincount(test.y, minlength=len(class_names)).tolist()
    gates = quality_gates(report, cfg, class_names, support)
    # Everything that can be refused is refused before anything is registered: a damaged checkpoint, another task
    load_model(root, ModelRole.STUDENT)
    tracking.use_store(root)
    comparable = check_same_task(name, contract, cfg.replace_contract)
    files, deployable = deployable_files(root)
    trigger = origin.trigger or this_process()
    folder = (root / model_dir(ModelRole.STUDENT)).is_dir()  # an hf student: its save_pretrained folder
    text_files = (datasets.tokenizer_file(root, manifest), root / model_dir(ModelRole.STUDENT)) if contract.texts \
        else None
    with tracking.open_run(root, **lineage.stage_run(root, params, "promote", origin)) as run_id:
        # the audit rebuilds and re-measures from these
        tracking.log_files([root / f for f in model_files(ModelRole.STUDENT, folder)], Artifact.MODEL_FILES)
        tracking.log_dict(params.model_dump(mode="json"), "params.json")  # the audit compares params.yaml to it
        version = tracking.register(deployable, contract, test.raw[:EXAMPLE_ROWS], name, text_files)
        candidate = Candidate(model_name=name, version=version,
                              metrics=comparable_costs(report["models"][ModelRole.STUDENT], report))
        try:
            decision = decide(root, params, report, run_id, candidate, (files, deployable), test, gates, trigger,
                              comparable)
        except BaseException as err:
            # No version is left without a decision: a failure between registering and the recorded decision
            # marks it failed, with the reason (nothing has moved an alias yet).
            mark_failed(name, version, err)
            raise
        log_decision(decision)  # the decision is recorded; what follows only mirrors it into the run
    write_json(root / PROMOTION, decision.to_dict())
    return decision


def mark_failed(name: str, version: int, err: BaseException) -> None:
    """Tag the version failed with `err`; a store that cannot take the tag is logged, so that the original error,
    not this one, is what the stage raises."""
    try:
        tracking.mark_failed(name, version, f"promote failed: {type(err).__name__}: {err}")
    except Exception as tagging:  # the store that failed the stage may refuse this too
        logging.getLogger(__name__).error("%s v%s is left without a decision: tagging it failed also failed (%s: %s)",
                                          name, version, type(tagging).__name__, tagging)


def log_decision(decision: Decision) -> None:
    """The gates, statistics and the decision into the promote run (the version's tags and the history hold them
    already)."""
    gate_values = {f"gate.{g.name}": g.value for g in decision.gates}
    stat_values = {f"stat.{k}": float(v) for k, v in decision.statistics.items() if not isinstance(v, str)}
    tracking.log_metrics(gate_values | stat_values | {"promoted": float(decision.promoted)})
    tracking.set_tags(gate_tags(decision.gates))
    tracking.log_dict(decision.to_dict(), "decision.json")  # the audit recomputes the statistics from it


EXAMPLE_ROWS = 5
"""Raw test rows stored as the registered model's input example."""


def decide(root: Path, params: config.Params, report: dict, run_id: str, candidate: Candidate,
           deploy_files: tuple[list[Path], Path], test: ScoredSplit, gates: list[Gate], trigger: str,
           comparable: bool) -> Decision:
    """Everything from registering `candidate` to its recorded decision: the version's files and tags, the served
    accuracy, the decision under the registry lock (against the champion when `comparable`), and its record."""
    cfg = params.promote
    name, version, deployable = candidate.model_name, candidate.version, deploy_files[1]
    # Deployable ONNX files (issue 9): logged with this version, sha256 of each as a version tag.
    tracking.log_deployable(name, version, *deploy_files)
    if report.get("target"):  # what its latency was timed beside, so the audit re-times it on the same terms
        tracking.log_reference(name, version, root / onnx_path(ModelRole.TEACHER))
    digests = artifacts.artifact_digests(name, version, run_id)
    tracking.log_dict(digests, "artifacts.json")
    labels = comparison.served_labels(name, version, test)  # scored once: the served check and the champion's
    served = served_accuracy(name, version, labels, test.y, root, deployable)
    tags = lineage_tags(root, params, report, run_id) | {Tag.ARTIFACTS_SHA256: artifacts.digest_of(digests),
                                                         Tag.SERVED_ACCURACY: f"{served:.6f}"}
    tracking.tag_version(name, version, tags)
    tracking.log_metrics(cost_metrics(candidate) | {"served.accuracy": served})
    with promotion_lock(name, cfg.lock_timeout_s, trigger):
        incumbent = incumbent_now(candidate, labels, test, cfg) if comparable else None
        decision = judge(gates, candidate, incumbent, cfg)
        record(decision, tags, report, trigger)
    return decision


def served_accuracy(name: str, version: int, labels: np.ndarray, y: np.ndarray, root: Path, deployable: Path) -> float:
    """The registered model's accuracy on the raw test split from its served `labels` (its pyfunc's). It must be
    the deployable file's accuracy that the quantize stage measured on the same split, and each answer the one
    the file gives on the pipeline's own inputs, or the served model does not compute what was evaluated
    (preprocessing lost on the way): ValueError naming both."""
    accuracy = float((labels == y).mean())
    quantized = QuantizeResult.read(root / metrics_path("quantize"))
    recorded = next((v["accuracy"] for v in quantized.variants.values() if Path(v["file"]).name == deployable.name),
                    None)
    if recorded is not None and quantized.eval_images == len(y) and \
            round(recorded * len(y)) != round(accuracy * len(y)):
        raise ValueError(f"{name} v{version}: the served model is right on {accuracy:.4%} of the raw test split, "
                         f"but the deployable {deployable.name} was measured at {recorded:.4%}")
    check_served_answers(name, version, labels, root, deployable)
    return accuracy


def check_served_answers(name: str, version: int, labels: np.ndarray, root: Path, deployable: Path) -> None:
    """ValueError unless the served `labels` are, row by row, the deployable file's on the pipeline's own inputs:
    equal counts of right answers can hide answers that moved both ways (a tokenizer off by one word)."""
    differ = np.flatnonzero(deployable_labels(root, deployable) != labels)
    if len(differ):
        raise ValueError(f"{name} v{version}: the served model answers {len(differ)} of {len(labels)} test rows "
                         f"differently from the deployable {deployable.name} on the data stage's inputs (first: row "
                         f"{differ[0]}): it does not prepare its inputs as the data stage did")


def deployable_labels(root: Path, deployable: Path) -> np.ndarray:
    """The deployable file's classes for the test split as the pipeline prepared it (raw pixels or features, or
    the data stage's token ids), run directly: what the served model, from raw inputs, must answer."""
    from steps.compression import onnx_export

    x, _ = datasets.onnx_split(root, "test")
    return onnx_export.predict(onnx_export.session(deployable, 1), x).argmax(1)


def gate_tags(gates: list[Gate]) -> dict[str, str]:
    return {f"{Tag.GATE}.{g.name}": g.verdict for g in gates}


def record(decision: Decision, tags: dict[str, str], report: dict, trigger: str) -> None:
    """Move the aliases, tag the version with the decision and its gates, append to the history (under the lock);
    `tags` are the version's lineage tags, `trigger` what started the run."""
    name, version = decision.model_name, decision.version
    kind = "promoted" if decision.promoted else "rejected"
    moves = aliases.take_champion(name, version) if decision.promoted else aliases.become_challenger(name, version)
    champion = {"champion.accuracy": decision.incumbent_accuracy} if decision.incumbent_accuracy is not None else {}
    event = history.Event(
        model_name=name, kind=kind, version=version, reason=decision.reason,
        champion_before=decision.incumbent_version,
        champion_after=version if decision.promoted else decision.incumbent_version, moves=moves,
        gates={g.name: g.verdict for g in decision.gates},
        metrics={f"candidate.{k}": v for k, v in report["models"][ModelRole.STUDENT].items()
                 if isinstance(v, int | float)} | champion,
        lineage={k: v for k, v in tags.items() if k in LINEAGE_KEYS},
        statistics=decision.statistics, trigger=trigger,
    )
    tracking.tag_version(name, version, {
        **aliases.decision_tags(kind, decision.reason, event.time, event.trigger),
        **gate_tags(decision.gates),
        **history.statistics_tags(decision.statistics),
    })
    history.record(event)


LINEAGE_KEYS = (Tag.GIT_COMMIT, Tag.GIT_DIRTY, Tag.DATA_HASH, Tag.PARAMS_HASH, Tag.MODEL_SHA256, Tag.PROMOTE_RUN,
                Tag.TOKENIZER_SHA256)


def lineage_tags(root: Path, params: config.Params, report: dict, run_id: str) -> dict[str, str]:
    """What an auditor needs to re-prove this version."""
    return {
        **lineage.code_tags(root),
        Tag.DATA_HASH: storage.data_hash(root) or "unrecorded",
        Tag.PARAMS_HASH: params.section_hash(*LINEAGE_SECTIONS),
        Tag.MODEL_SHA256: sha256(model_weights(root, ModelRole.STUDENT)),
        Tag.PROMOTE_RUN: run_id,
        Tag.EVALUATE_RUN: report.get("mlflow_run_id", "unrecorded"),
        Tag.ACCURACY: f"{report['models'][ModelRole.STUDENT]['accuracy']:.6f}",
        **teacher_init_tags(root, params),
        **tokenizer_tags(root),
        **{f"{Tag.TARGET}.{k}": f"{v:g}" for k, v in ((report.get("target") or {}).get("budget") or {}).items()},
    }


def teacher_init_tags(root: Path, params: config.Params) -> dict[str, str]:
    """Where the teacher started from (teacher.init, as the teacher stage recorded it; or an hf teacher's
    teacher.arch.path, a save_pretrained folder, and the sha256 of its weights); none when trained from
    scratch. Not a declared input of promote: a new init changes the teacher and so the student."""
    for source in params.teacher.arch.files:  # a family loaded from a folder (hf: teacher.arch.path)
        return {Tag.TEACHER_INIT: source, Tag.TEACHER_INIT_SHA256: weights_sha256(root / source)}
    path = root / metrics_path("teacher")
    teacher = TeacherResult.read(path) if path.is_file() else None
    if teacher is None or not teacher.init_uri:
        return {}
    return {Tag.TEACHER_INIT: teacher.init_uri, Tag.TEACHER_INIT_SHA256: teacher.init_sha256}


def tokenizer_tags(root: Path) -> dict[str, str]:
    """Text data: the sha256 of the tokenizer.json the served model tokenises with (the data's, hash-checked)."""
    manifest = datasets.read_manifest(root)
    if datasets.kind(manifest) != "text":
        return {}
    return {Tag.TOKENIZER_SHA256: sha256(datasets.tokenizer_file(root, manifest))}


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("promote", run, sys.argv[1:])

