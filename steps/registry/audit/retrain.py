"""The optional retrain check: the training stages rerun at the recorded commit must give the same student."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from steps import tracking
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, REPORT, model_weights
from steps.core.names import ModelRole, Tag
from steps.registry.audit import language as lm_audit
from steps.registry.audit.report import Check

RETRAIN_TOLERANCE = 0.01
"""Absolute accuracy difference allowed for a retrained student (a language model's next-token accuracy; its
perplexity has a relative tolerance of its own, language.RETRAIN_PERPLEXITY_TOLERANCE). Same params, data and code;
CPU is deterministic, so this only absorbs a different CPU's floating-point kernels."""
RETRAIN_EXACT = ("parameters", "macs", "file_bytes")


@dataclass(frozen=True)
class Retrained:
    """What the rerun leaves once its worktree is gone: its evaluate report's student, and the sha256 of the
    student's weights (which equals the version's model tag when the rerun gave the same bits)."""

    student: dict
    weights_sha256: str


def retrain_check(root: Path, tags: dict[str, str], params_doc: dict, work: Path, tolerance: float,
                  language: bool = False) -> list[Check]:
    """Rerun the training stages at the recorded commit, in a temporary worktree, on the verified data; compare the
    new student with the evaluate run's metrics (a language model's by language.retrain_rows)."""
    retrained = rerun(root, tags, params_doc, work)
    if isinstance(retrained, Check):
        return [retrained]
    logged = tracking.run_record(tags[Tag.EVALUATE_RUN]).data.metrics
    if language:
        return lm_audit.retrain_rows(retrained.student, retrained.weights_sha256, logged, tags, tolerance)
    return classifier_rows(retrained.student, logged, tolerance)


def rerun(root: Path, tags: dict[str, str], params_doc: dict, work: Path) -> Retrained | Check:
    """The training stages of the recorded commit run on the logged params; a failed Check when they fail."""
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
            return Check("retrain", False, f"training at {commit[:12]} failed: {done.stderr[-500:]}")
        weights = model_weights(tree, ModelRole.STUDENT)
        return Retrained(json.loads((tree / REPORT).read_text())["models"][ModelRole.STUDENT],
                         sha256(weights) if weights.is_file() else "missing")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)


def classifier_rows(student: dict, logged: dict[str, float], tolerance: float) -> list[Check]:
    """Accuracy within `tolerance` (absolute); parameters, MACs and file bytes exact."""
    rows = [Check("retrain accuracy", abs(student["accuracy"] - logged["student.accuracy"]) <= tolerance,
                  f"within {tolerance} (absolute)", recorded=f"{logged['student.accuracy']:.6g}",
                  observed=f"{student['accuracy']:.6g}")]
    for key in RETRAIN_EXACT:
        rows.append(Check(f"retrain {key}", float(student[key]) == logged[f"student.{key}"], "exact",
                          recorded=f"{logged[f'student.{key}']:.6g}", observed=f"{float(student[key]):.6g}"))
    return rows
