"""Every stage runs from its declared inputs alone, as `dvc repro` runs it in a fresh process.

The project after the stage before is stripped of every file a stage writes that this stage does not declare
as an input (steps/core/dag.py); the stage must still run and write every output it declares. A stage that
reads an undeclared file (DVC would neither rerun it when that file changes nor order it after its writer), or
that writes less than it declares, fails here.
"""

from __future__ import annotations

import importlib
import shutil

import pytest

from steps.core.dag import STAGE_NAMES, STAGES, stage


def strip_to_inputs(root, name: str) -> list[str]:
    """Delete every stage output under `root` that stage `name` does not declare as an input; the paths kept."""
    inputs = set(stage(name).inputs)
    for st in STAGES:
        for out in (*st.outs, *st.metrics, *st.plots):
            path = root / out
            if out in inputs or not path.exists():
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return sorted(p for p in inputs if (root / p).exists())


@pytest.mark.parametrize("name", STAGE_NAMES[1:])
def test_every_stage_runs_from_its_declared_inputs_alone(project_after, stage_params, name):
    root = project_after(STAGE_NAMES[STAGE_NAMES.index(name) - 1])
    kept = strip_to_inputs(root, name)
    assert kept == sorted(stage(name).inputs)  # the stage before left every declared input
    importlib.import_module(stage(name).module).run(stage_params, root)
    st = stage(name)
    missing = [out for out in (*st.outs, *st.metrics, *st.plots) if not (root / out).exists()]
    assert not missing, f"{name} did not write {missing}"
