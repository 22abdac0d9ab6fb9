"""The data split and teacher the compression benchmarks start from (compression, deploy, transformers,
mnist_subset), and the project folders their variants run in. A --work folder keeps them: a model an earlier
run trained with the same params is reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from steps import config, data, teacher
from steps.core.layout import DATA_DIR, model_files, model_path
from steps.core.names import ModelRole


def _same_recipe(a: dict, b: dict) -> bool:
    """Equal params apart from `threads` (how many cores trained a model, not what it is)."""
    return {**a, "threads": None} == {**b, "threads": None}


def done(root: Path, role: ModelRole, raw: dict) -> bool:
    """True when an earlier run left this model under `root` with the same params (--work reuses it)."""
    previous = root / "params.yaml"
    if (root / model_path(role)).exists() and previous.exists():
        if not _same_recipe(yaml.safe_load(previous.read_text()), raw):
            raise SystemExit(f"{root}: holds a model trained with other params; use another --work folder")
        return True
    shutil.rmtree(root, ignore_errors=True)  # nothing, or a run that stopped half-way: start it again
    return False


def train_base(work: Path, raw: dict) -> tuple[Path, config.Params]:
    """`work/base`: the data split and the teacher every variant starts from, with `raw` as its params."""
    base = work / "base"
    params = config.validate(raw)
    if done(base, ModelRole.TEACHER, raw):
        return base, params
    base.mkdir(parents=True)
    (base / "params.yaml").write_text(yaml.safe_dump(raw))
    data.run(params, base)
    teacher.run(params, base)
    return base, params


def seed_project(root: Path, base: Path, raw: dict) -> config.Params:
    """A project dir holding the shared data split and teacher, plus this variant's params."""
    shutil.copytree(base / DATA_DIR, root / DATA_DIR)
    (root / "models").mkdir()
    for rel in model_files(ModelRole.TEACHER):
        shutil.copy2(base / rel, root / rel)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return config.validate(raw)
