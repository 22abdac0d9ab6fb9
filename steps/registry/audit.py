"""Audit: re-prove a registered version from its lineage, or say exactly what no longer matches.

Checks, in order (each one a row of the verdict table):
1. lineage: the version carries git commit, DVC data hash, params hash, promote and evaluate runs, artifact digest;
2. data: the test data is fetched by its DVC hash from the remote (at the recorded git revision's DVC config)
   and every object's md5 is checked (steps/storage/fetch.py);
3. params: the project's params.yaml (the pipeline's sections) hashes to the recorded params hash, and equals
   the params the promote run logged, key by key;
4. artifacts: the sha256 of every file of the registered model and of its safetensors/spec, as the registry
   serves them now, equals the record made at registration (itself checked against a version tag);
5. metrics: the model is re-measured on the fetched test split and every metric the evaluate run logged is
   compared: exact for accuracy, counts and sizes (CPU results are deterministic); latency on the backend the
   evaluate run timed (ONNX Runtime on the registered deployable ONNX file, or PyTorch eager): p95 by its 95%
   confidence intervals (it fails only when the re-measured interval starts above the end of the recorded one),
   p50, and p95 without intervals (fewer repeats than an interval needs), within a stated relative tolerance;
   the served pyfunc model's accuracy must equal it too;
5b. decision: the promotion's paired test against the champion it faced (McNemar, bootstrap interval, worst
   class) is recomputed from both registered versions on the fetched test split and must equal what the
   decision recorded and tagged;
6. retrain (optional): the pipeline's training stages rerun at the recorded commit in a temporary git worktree,
   on the verified data and the logged params; the new student must match within a stated tolerance.
The report (JSON and Markdown) goes to `<root>/audits/` and to an MLflow run; any failed check fails the audit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from steps import config, storage, tracking
from steps.core.dag import LINEAGE_SECTIONS
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, REPORT, model_files, onnx_path
from steps.core.names import STATISTIC_TAG, Artifact, ModelRole, Tag
from steps.core.results import flatten
from steps.registry import artifacts

AUDIT_EXPERIMENT = "shrinkflow-audits"
AUDITS_DIR = "audits"
LATENCY_TOLERANCE = 1.0
"""Relative: |now - recorded| <= 1.0 x recorded, for p50 and for a p95 without a confidence interval on both sides.
Latency depends on the machine and its load; the rest is exact. A p95 with intervals is judged by them instead
(latency_check): a fixed tolerance failed audits of an unchanged model timed on a busier machine."""
RETRAIN_TOLERANCE = 0.01
"""Absolute accuracy difference allowed for a retrained student (same params, data and code; CPU is deterministic,
so this only absorbs a different CPU's floating-point kernels)."""
EXACT_METRICS = ("accuracy", "parameters", "nonzeros", "file_bytes", "compressed_bytes", "macs")
MEASURED_METRICS = ("latency_p50_ms", "latency_p95_ms")
RETRAIN_EXACT = ("parameters", "macs", "file_bytes")
REQUIRED_TAGS = (Tag.GIT_COMMIT, Tag.DATA_HASH, Tag.PARAMS_HASH, Tag.MODEL_SHA256, Tag.PROMOTE_RUN,
                 Tag.EVALUATE_RUN, Tag.ARTIFACTS_SHA256)


class AuditError(ValueError):
    """The audit cannot start (no such model, version or alias); names it."""


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not checked (the detail says why)
    detail: str
    recorded: str = ""
    observed: str = ""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "skipped"}[self.passed]


@dataclass
class AuditReport:
    model_uri: str
    model_name: str
    version: int
    started: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed,
                "checks": [asdict(c) | {"verdict": c.verdict} for c in self.checks]}

    def to_markdown(self) -> str:
        lines = [f"# Audit of {self.model_uri} (v{self.version})", "",
                 f"Started {self.started}. Verdict: **{'PASS' if self.passed else 'FAIL'}**"
                 f" ({len(self.failures())} failed of {len(self.checks)} checks).", "",
                 "| check | verdict | recorded | observed | detail |", "|---|---|---|---|---|"]
        for c in self.checks:
            cells = [c.name, c.verdict, c.recorded, c.observed, c.detail]
            lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
        return "\n".join(lines) + "\n"


def resolve(model_uri: str) -> tuple[str, int]:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS` -> (name, version); AuditError when there is none."""
    try:
        ref = tracking.ModelRef.parse(model_uri)
        return ref.name, ref.resolve()
    except (ValueError, tracking.UnknownModel) as err:
        raise AuditError(str(err)) from None


def run(root: Path, model_uri: str, retrain: bool = False, latency_tolerance: float = LATENCY_TOLERANCE,
        retrain_tolerance: float = RETRAIN_TOLERANCE) -> AuditReport:
    """Audit one version; never raises for a mismatch (it becomes a failed check), only for a bad request."""
    root = Path(root).resolve()
    tracking.use_store(root)
    name, version = resolve(model_uri)
    tags = dict(tracking.model_version(name, version).tags)
    report = AuditReport(model_uri, name, version, datetime.now(UTC).isoformat(timespec="seconds"))
    report.checks.append(_lineage(tags))
    if report.checks[-1].passed is False:
        return report
    with tempfile.TemporaryDirectory(prefix="shrinkflow-audit-") as tmp:
        work = Path(tmp) / "project"
        data_ok = _guard(report, "data", lambda: _data(root, tags, work))
        params_doc = _guard_value(report, "params", lambda: _params(root, tags))
        artifacts_ok = _guard(report, "artifacts", lambda: _artifacts(name, version, tags, work))
        if Tag.TEACHER_INIT in tags:
            _guard(report, "teacher_init", lambda: _teacher_init(root, tags, work))
        if data_ok and artifacts_ok:
            _guard(report, "metrics", lambda: _metrics(root, name, version, tags, work, latency_tolerance))
            _guard(report, "decision", lambda: _decision(name, version, tags, work))
        else:
            report.checks.append(Check("metrics", None, "needs verified data and artifacts"))
        if retrain:
            if data_ok and params_doc is not None:
                _guard(report, "retrain", lambda: _retrain(root, tags, params_doc, work, retrain_tolerance))
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


def _lineage(tags: dict[str, str]) -> Check:
    missing = [t for t in REQUIRED_TAGS if tags.get(t) in (None, "", "unknown", "unrecorded")]
    if missing:
        return Check("lineage", False, f"missing lineage tags: {', '.join(missing)}")
    dirty = " (uncommitted changes at registration)" if tags.get(Tag.GIT_DIRTY) == "true" else ""
    return Check("lineage", True, f"commit {tags[Tag.GIT_COMMIT][:12]}{dirty}, data {tags[Tag.DATA_HASH]}, "
                                  f"promote run {tags[Tag.PROMOTE_RUN]}")


def _data(root: Path, tags: dict[str, str], work: Path) -> list[Check]:
    files = storage.fetch_dir(root, tags[Tag.DATA_HASH], work / DATA_DIR, rev=tags[Tag.GIT_COMMIT])
    return [Check("data", True, f"fetched {len(files)} files by hash and verified each md5",
                  recorded=tags[Tag.DATA_HASH], observed=tags[Tag.DATA_HASH])]


def _params(root: Path, tags: dict[str, str]) -> tuple[list[Check], dict]:
    current = config.load(root)
    logged = _logged_json(tags[Tag.PROMOTE_RUN], "params.json")
    now = current.model_dump(mode="json")
    flat_now, flat_logged = flatten(now), flatten(logged)
    differing = sorted(k for k in flat_now.keys() | flat_logged.keys()
                       if k.split(".")[0] in LINEAGE_SECTIONS and flat_now.get(k) != flat_logged.get(k))
    hash_now = current.section_hash(*LINEAGE_SECTIONS)
    logged_hash = config.validate(logged).section_hash(*LINEAGE_SECTIONS)
    rows = [Check("params.hash", hash_now == tags[Tag.PARAMS_HASH] == logged_hash,
                  "params.yaml (pipeline sections) vs the version's params hash and the logged params",
                  recorded=tags[Tag.PARAMS_HASH][:16], observed=hash_now[:16])]
    rows.append(Check("params.values", not differing,
                      "differs from the promote run's logged params: " + ", ".join(
                          f"{k} ({flat_logged.get(k)!r} logged, {flat_now.get(k)!r} now)" for k in differing)
                      if differing else "every pipeline param equals the logged value"))
    return rows, logged


def _logged_json(run_id: str, path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(tracking.download_artifacts(tracking.run_artifact_uri(run_id, path), Path(tmp)).read_text())


def _artifacts(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    recorded = _logged_json(tags[Tag.PROMOTE_RUN], "artifacts.json")
    rows = [Check("artifacts.record", artifacts.digest_of(recorded) == tags[Tag.ARTIFACTS_SHA256],
                  "artifacts.json in the promote run vs the version's digest tag",
                  recorded=tags[Tag.ARTIFACTS_SHA256][:16], observed=artifacts.digest_of(recorded)[:16])]
    now = artifacts.artifact_digests(name, version, tags[Tag.PROMOTE_RUN])
    changed = sorted(p for p in recorded.keys() | now.keys() if recorded.get(p) != now.get(p))
    rows.append(Check("artifacts.sha256", not changed,
                      ("changed: " + ", ".join(f"{p} (recorded {str(recorded.get(p))[:12]}, now {str(now.get(p))[:12]})"
                                               for p in changed)) if changed else f"{len(now)} files match",
                      recorded=f"{len(recorded)} files", observed=f"{len(now)} files"))
    # The verified weights and spec, where the evaluate code expects them.
    files = tracking.download_artifacts(tracking.run_artifact_uri(tags[Tag.PROMOTE_RUN], Artifact.MODEL_FILES),
                                        work / "downloads")
    for rel in model_files(ModelRole.STUDENT):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files / Path(rel).name, work / rel)
    weights = sha256(work / model_files(ModelRole.STUDENT)[0])
    rows.append(Check("artifacts.weights", weights == tags[Tag.MODEL_SHA256], "student safetensors vs the model tag",
                      recorded=tags[Tag.MODEL_SHA256][:16], observed=weights[:16]))
    return rows


def _teacher_init(root: Path, tags: dict[str, str], work: Path) -> list[Check]:
    """The model the teacher started from (teacher.init) still has the sha256 recorded at promotion."""
    source, recorded = tags[Tag.TEACHER_INIT], tags.get(Tag.TEACHER_INIT_SHA256, "unrecorded")
    if source.startswith("models:/"):
        _, weights = tracking.download_model_files(source, work / "teacher-init")
    else:
        weights = Path(source) if Path(source).is_absolute() else root / source
    now = sha256(weights) if weights.is_file() else "missing"
    return [Check("teacher_init.sha256", now == recorded, f"{source} vs the version's teacher-init tag",
                  recorded=recorded[:16], observed=now[:16])]


def _metrics(root: Path, name: str, version: int, tags: dict[str, str], work: Path,
             latency_tolerance: float) -> list[Check]:
    import numpy as np

    from steps.compression.training import seed_everything
    from steps.core.datasets import load_splits
    from steps.core.measurement import ONNXRUNTIME, measure_models

    params = config.validate(_logged_json(tags[Tag.PROMOTE_RUN], "params.json"))
    seed_everything(params.seed, params.threads)
    test = load_splits(work, ("test",))["test"]
    # The same backend the evaluate run timed: ONNX Runtime runs the registered (sha256-checked) fp32 file.
    onnx_files = None
    if params.evaluate.latency_backend == ONNXRUNTIME:
        student_onnx = work / onnx_path(ModelRole.STUDENT)
        tracking.download_deployable(tracking.model_version(name, version), student_onnx.parent)
        onnx_files = {"student": student_onnx}
    measured = measure_models({"student": (work, ModelRole.STUDENT)}, test, params.evaluate, params.threads,
                              onnx_files)["student"]
    backend = "the registered ONNX file in ONNX Runtime" if onnx_files else "PyTorch eager"
    logged = tracking.run_record(tags[Tag.EVALUATE_RUN]).data.metrics
    rows = []
    for key in (*EXACT_METRICS, *MEASURED_METRICS):
        recorded = logged.get(f"student.{key}")
        if recorded is None:
            rows.append(Check(f"metric {key}", False, "not logged by the evaluate run"))
            continue
        now = float(measured[key])
        if key in EXACT_METRICS:
            rows.append(Check(f"metric {key}", now == recorded, "exact", recorded=f"{recorded:.6g}",
                              observed=f"{now:.6g}"))
        else:
            rows.append(latency_check(key, logged, measured, latency_tolerance, backend))
    # Compared as counts of correct predictions: the evaluate step computes accuracy in float32.
    served = tracking.load_predictor(name, version)
    logits = np.asarray(served.predict(test.x.numpy()))
    correct = int((logits.argmax(1) == test.y.numpy()).sum())
    recorded_correct = round(logged["student.accuracy"] * len(test.y))
    rows.append(Check("served model accuracy", correct == recorded_correct,
                      "correct predictions of the registered pyfunc model on the fetched test split, exact",
                      recorded=f"{recorded_correct}/{len(test.y)}", observed=f"{correct}/{len(test.y)}"))
    return rows


P95_INTERVAL = ("latency_p95_low_ms", "latency_p95_high_ms")
"""The ends of the p95's confidence interval (steps/core/measurement.py), re-measured and as the evaluate run
logged them (student.<key>; absent when it timed too few repeats for one)."""


def latency_check(key: str, logged: dict[str, float], measured: dict, tolerance: float, backend: str) -> Check:
    """One re-timed latency metric against the evaluate run's `logged` metrics (student.<key>).

    p95, when both runs have its confidence interval (steps.core.measurement.with_p95_interval): passes when the
    intervals overlap or the re-measured one lies below (faster now), fails only when the re-measured interval
    starts above the recorded one's end, and names both intervals. Load on a shared machine shifts and widens
    the re-measured interval; a clear gap is what says the model got slower. p50, and p95 without intervals:
    |now - recorded| <= tolerance x recorded.
    """
    from steps.core.measurement import P95_CONFIDENCE
    from steps.core.stats.quantiles import min_samples_for_quantile

    recorded, now = logged[f"student.{key}"], float(measured[key])
    timed = f"timed on {backend} as the evaluate run was"
    rule = ""
    if key == "latency_p95_ms":
        before = [logged.get(f"student.{end}") for end in P95_INTERVAL]
        after = [measured.get(end) for end in P95_INTERVAL]
        if None not in before and None not in after:
            (low, high), (new_low, new_high) = before, [float(v) for v in after]
            ok = new_low <= high
            relation = ("they overlap" if ok and low <= new_high else
                        "faster now: the re-measured interval ends below the recorded one" if ok else
                        "slower now: the re-measured interval starts above the recorded one's end")
            return Check(f"metric {key}", ok,
                         f"{P95_CONFIDENCE:.0%} intervals of p95: recorded [{low:.4g}, {high:.4g}] ms, re-measured "
                         f"[{new_low:.4g}, {new_high:.4g}] ms; {relation}; {timed}",
                         recorded=f"{recorded:.6g} [{low:.4g}, {high:.4g}]",
                         observed=f"{now:.6g} [{new_low:.4g}, {new_high:.4g}]")
        which = " and ".join(side for side, ends in (("recorded", before), ("re-measured", after)) if None in ends)
        rule = (f"no {P95_CONFIDENCE:.0%} interval of p95 {which} (it needs "
                f"{min_samples_for_quantile(0.95, P95_CONFIDENCE)} latency samples): ")
    ok = abs(now - recorded) <= tolerance * recorded
    return Check(f"metric {key}", ok, f"{rule}within {tolerance:.0%}, {timed}", recorded=f"{recorded:.6g}",
                 observed=f"{now:.6g}")


def _decision(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """Recompute the promotion's paired test vs the champion it faced (both versions served by the registry,
    on the fetched test split, with the logged promote params and the fixed bootstrap seed): every statistic
    the decision recorded must come out the same."""
    from steps.core.datasets import load_splits, read_manifest
    from steps.core.stats.classes import worst_of
    from steps.registry import comparison
    from steps.registry.history import statistics_tags

    decision = _logged_json(tags[Tag.PROMOTE_RUN], "decision.json")
    recorded, champion = decision.get("statistics") or {}, decision.get("incumbent_version")
    if champion is None or not recorded:
        return [Check("decision statistics", None, "no champion at decision time: nothing was compared")]
    cfg = config.validate(_logged_json(tags[Tag.PROMOTE_RUN], "params.json")).promote
    test = load_splits(work, ("test",))["test"]
    x, y = test.x.numpy(), test.y.numpy()
    classes = list(read_manifest(work)["classes"])
    before, now = comparison.served_labels(name, champion, x), comparison.served_labels(name, version, x)
    drops = comparison.class_drops(y, before, now, classes, cfg)
    redone = comparison.statistics(comparison.compare(y, before, now, classes, cfg), worst_of(drops))
    # compared as the version's tags print them (6 significant digits) and against the tags themselves
    want, got, p_key = statistics_tags(recorded), statistics_tags(redone), f"{STATISTIC_TAG}.p_value"
    differing = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k) or tags.get(k) != want.get(k))
    return [Check("decision statistics", not differing,
                  f"paired test vs champion v{champion} recomputed: " + (
                      "differs in " + ", ".join(f"{k.rsplit('.', 1)[-1]} (recorded {want.get(k)}, tagged "
                                                f"{tags.get(k)}, now {got.get(k)})" for k in differing)
                      if differing else f"{len(want)} statistics equal, verdict {redone['verdict']}"),
                  recorded=f"p={want.get(p_key)}", observed=f"p={got.get(p_key)}")]


def _retrain(root: Path, tags: dict[str, str], params_doc: dict, work: Path, tolerance: float) -> list[Check]:
    """Rerun the training stages at the recorded commit, in a temporary worktree, on the verified data."""
    commit = tags[Tag.GIT_COMMIT]
    tree = work.parent / "retrain"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), commit], cwd=root, check=True,
                   capture_output=True, text=True)
    try:
        (tree / "params.yaml").write_text(yaml.safe_dump(params_doc, sort_keys=False))
        shutil.copytree(work / DATA_DIR, tree / DATA_DIR)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
        env["PYTHONPATH"] = str(tree)  # that commit's code, not the code running the audit
        # That commit's stage commands (`python -m steps.<stage>`), minus data (verified above) and promote (it
        # would register a version), run in one interpreter: importing torch and MLflow once, not per stage.
        stages = yaml.safe_load((tree / "dvc.yaml").read_text())["stages"]
        modules = [st["cmd"].split("-m", 1)[1].strip() for n, st in stages.items() if n not in ("data", "promote")]
        driver = ("import runpy, sys\nroot, modules = sys.argv[1], sys.argv[2:]\nfor module in modules:\n"
                  "    sys.argv = [module, '--root', root]\n"
                  "    runpy.run_module(module, run_name='__main__', alter_sys=True)")
        done = subprocess.run([sys.executable, "-c", driver, str(tree), *modules], cwd=tree, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            return [Check("retrain", False, f"training at {commit[:12]} failed: {done.stderr[-500:]}")]
        student = json.loads((tree / REPORT).read_text())["models"][ModelRole.STUDENT]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
    logged = tracking.run_record(tags[Tag.EVALUATE_RUN]).data.metrics
    rows = [Check("retrain accuracy", abs(student["accuracy"] - logged["student.accuracy"]) <= tolerance,
                  f"within {tolerance} (absolute)", recorded=f"{logged['student.accuracy']:.6g}",
                  observed=f"{student['accuracy']:.6g}")]
    for key in RETRAIN_EXACT:
        rows.append(Check(f"retrain {key}", float(student[key]) == logged[f"student.{key}"], "exact",
                          recorded=f"{logged[f'student.{key}']:.6g}", observed=f"{float(student[key]):.6g}"))
    return rows


def save(root: Path, report: AuditReport) -> tuple[Path, Path]:
    """Write the JSON and Markdown reports under <root>/audits/ and log both to an MLflow run; tag the version."""
    stamp = report.started.replace(":", "").replace("-", "")
    base = Path(root) / AUDITS_DIR / f"{report.model_name}-v{report.version}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    md_path.write_text(report.to_markdown())
    verdict = "pass" if report.passed else "fail"
    tracking.record_files(AUDIT_EXPERIMENT, f"audit {report.model_name} v{report.version}",
                          {Tag.AUDIT_MODEL: report.model_name, Tag.AUDIT_VERSION: str(report.version),
                           Tag.AUDIT_VERDICT: verdict}, [json_path, md_path], passed=report.passed)
    tracking.tag_version(report.model_name, report.version, {Tag.LAST_AUDIT: f"{verdict} {report.started}"})
    return json_path, md_path
