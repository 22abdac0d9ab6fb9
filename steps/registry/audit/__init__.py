"""Audit: re-prove a registered version from its lineage, or say exactly what no longer matches.

Checks, in order (each one a row of the verdict table):
1. lineage: the version carries git commit, DVC data hash, params hash, promote and evaluate runs, artifact digest;
2. data: the test data is fetched by its DVC hash from the remote (at the recorded git revision's DVC config)
   and every object's md5 is checked (steps/storage/fetch.py);
3. params: the project's params.yaml (the pipeline's sections) hashes to the recorded params hash, and equals
   the params the promote run logged, key by key;
4. artifacts: the sha256 of every file of the registered model and of its safetensors/spec (or hf folder), as the
   registry serves them now, equals the record made at registration (itself checked against a version tag);
4b. tokenizer (text models): the tokenizer the version serves with, the one in its hf folder, its contract's and
   the fetched data's all have the sha256 tagged at promotion; teacher_init: the teacher's starting weights
   (teacher.init, or an hf teacher's teacher.arch.path folder) still have the sha256 tagged at promotion;
5. metrics: the model is re-measured on the fetched test split and every metric the evaluate run logged is
   compared: exact for accuracy, counts and sizes (CPU results are deterministic); latency on the backend the
   evaluate run timed (ONNX Runtime on the registered deployable ONNX file, or PyTorch eager): p95 by its 95%
   confidence intervals (it fails only when the re-measured interval starts above the end of the recorded one),
   p50, and p95 without intervals (fewer repeats than an interval needs), within a stated relative tolerance;
   the served pyfunc model's accuracy must equal it too;
5b. budget: a budgeted version's latency limits (`target.latency_p95_ms`, `target.speedup`) judged again as evaluate
   judged them: the registered deployable timed beside the reference file logged with it, in windows; it fails
   only when the whole re-measured interval is past a limit (steps/core/latency.py);
5c. decision: the promotion's paired test against the champion it faced (McNemar, bootstrap interval, worst
   class) is recomputed from both registered versions on the fetched test split and must equal what the
   decision recorded and tagged;
6. retrain (optional): the pipeline's training stages rerun at the recorded commit in a temporary git worktree,
   on the verified data and the logged params; the new student must match within a stated tolerance (a
   classifier: accuracy within --retrain-tolerance, parameters, MACs and file bytes exact; a language model:
   language.retrain_rows).
A language model (its MLflow model's task is causal_lm) takes the checks of steps/registry/audit/language.py for
4b, 5 and 5c: the tokenizer in its served folder, its model files and the fetched data; perplexity re-measured
exactly against its tag, next-token accuracy, and the served generations of the evaluate run's prompts; the
champion comparison's paired document bootstrap. It has no budget (5b is a skipped row).
The report (JSON and Markdown) goes to `<root>/audits/` and to an MLflow run; any failed check fails the audit.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from steps import tracking
from steps.core.names import Tag
from steps.registry.audit import language
from steps.registry.audit.records import (
    artifacts_check,
    data_check,
    lineage_check,
    params_check,
    teacher_init_check,
    tokenizer_check,
)
from steps.registry.audit.remeasure import LATENCY_TOLERANCE, budget_check, decision_check, metrics_check
from steps.registry.audit.report import AuditReport, Check
from steps.registry.audit.retrain import RETRAIN_TOLERANCE, retrain_check


class AuditError(ValueError):
    """The audit cannot start (no such model, version or alias); names it."""


def resolve(model_uri: str) -> tuple[str, int]:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS` -> (name, version); AuditError when there is none."""
    try:
        ref = tracking.ModelRef.parse(model_uri)
        return ref.name, ref.resolve()
    except (ValueError, tracking.UnknownModel) as err:
        raise AuditError(str(err)) from None


def serves_texts(name: str, version: int, tags: dict[str, str]) -> bool:
    """A text model: its version has a tokenizer tag, or its contract takes texts (so a removed tag fails the
    tokenizer check, instead of skipping it)."""
    if Tag.TOKENIZER_SHA256 in tags:
        return True
    contract = tracking.contract_of(name, version)
    return contract is not None and contract.texts


def run(root: Path, model_uri: str, retrain: bool = False, latency_tolerance: float = LATENCY_TOLERANCE,
        retrain_tolerance: float = RETRAIN_TOLERANCE) -> AuditReport:
    """Audit one version; never raises for a mismatch (it becomes a failed check), only for a bad request."""
    root = Path(root).resolve()
    tracking.use_store(root)
    name, version = resolve(model_uri)
    tags = dict(tracking.model_version(name, version).tags)
    report = AuditReport(model_uri, name, version, datetime.now(UTC).isoformat(timespec="seconds"))
    report.checks.append(lineage_check(tags))
    if report.checks[-1].passed is False:
        return report
    lm = language.is_language_model(name, version)
    with tempfile.TemporaryDirectory(prefix="shrinkflow-audit-") as tmp:
        work = Path(tmp) / "project"
        data_ok = _guard(report, "data", lambda: data_check(root, tags, work))
        params_doc = _guard_value(report, "params", lambda: params_check(root, tags))
        artifacts_ok = _guard(report, "artifacts", lambda: artifacts_check(name, version, tags, work))
        if Tag.TEACHER_INIT in tags:
            _guard(report, "teacher_init", lambda: teacher_init_check(root, tags, work))
        if data_ok and lm:  # a generator has no contract: its own tokenizer check, which never skips
            _guard(report, "tokenizer", lambda: language.tokenizer_check(name, version, tags, work))
        elif data_ok and serves_texts(name, version, tags):
            _guard(report, "tokenizer", lambda: tokenizer_check(name, version, tags, work))
        if data_ok and artifacts_ok and lm:
            _guard(report, "metrics", lambda: language.metrics_check(name, version, tags, work))
            _guard(report, "decision", lambda: language.decision_check(name, version, tags, work))
            report.checks.append(language.BUDGET_SKIPPED)
        elif data_ok and artifacts_ok:
            _guard(report, "metrics", lambda: metrics_check(root, name, version, tags, work, latency_tolerance))
            _guard(report, "decision", lambda: decision_check(name, version, tags, work))
            _guard(report, "budget", lambda: budget_check(name, version, tags, work))
        else:
            report.checks.append(Check("metrics", None, "needs verified data and artifacts"))
        if retrain:
            if data_ok and params_doc is not None:
                _guard(report, "retrain",
                       lambda: retrain_check(root, tags, params_doc, work, retrain_tolerance, language=lm))
            else:
                report.checks.append(Check("retrain", None, "needs verified data and the logged params"))
    return report


def _guard(report: AuditReport, name: str, check) -> bool:
    """Run one check (which appends its rows); an exception becomes a failed row naming the cause."""
    before = len(report.checks)
    try:
        report.checks.extend(check())
    except Exception as err:  # an audit reports every cause it finds, it does not stop at the first
        report.checks.append(Check(name, False, f"{type(err).__name__}: {err}"))
    return all(c.passed is not False for c in report.checks[before:])


def _guard_value(report: AuditReport, name: str, check):
    holder = {}

    def rows():
        rows_, holder["value"] = check()
        return rows_

    ok = _guard(report, name, rows)
    return holder.get("value") if ok else None
