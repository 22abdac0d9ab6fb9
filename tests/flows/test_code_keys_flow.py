"""Code keys on a real tiny IDX project, through the real CLI, with the code under test a copy inside the project
(PYTHONPATH points there), so editing it never touches the checkout: code a CNN-on-IDX project does not run leaves
every stage cached; the IDX reader reruns the data stage alone when its outputs come out the same; and every
`steps` module a stage really imports (`python -m steps.<stage>`, as DVC runs it) is in that stage's key."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.checkout import copy_project
from flows import staleness
from steps import config
from steps.core import imports
from steps.core.dag import STAGE_NAMES, STAGES
from steps.core.hashing import content_hash
from steps.core.layout import DATA_DIR
from steps.tracking import localstore
from tests.helpers import shrinkflow, stage_states, tiny_params

pytestmark = pytest.mark.integration

READERS_NOT_RUN = ("steps/sources/table.py", "steps/sources/image_folder.py", "steps/sources/arrays.py")
TRANSFORMER_CODE = ("steps/compression/families/vit/model.py", "steps/compression/transformer_pruning.py",
                    "steps/compression/transformer_widths.py", "steps/compression/transformer_depth.py",
                    "steps/compression/distillation/attention_maps.py", "steps/compression/distillation/hidden_states.py",
                    "steps/compression/distillation/hints.py")


def code_env(project: Path) -> dict:
    return {"PYTHONPATH": str(project)}


@pytest.fixture(scope="module")
def project(tmp_path_factory, idx_dir) -> Path:
    root = copy_project(tmp_path_factory.mktemp("code-keys"), tiny_params(idx_dir, experiment="code-keys"))
    (root / "dvc.yaml").write_text((root / "dvc.yaml").read_text() + "# stale\n")
    first = shrinkflow(root, "run", extra_env=code_env(root))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert stage_states(first.stdout) == {name: "Completed" for name in STAGE_NAMES}
    assert first.stdout.count("regenerated") == 1  # the stale dvc.yaml, said once
    assert "# stale" not in (root / "dvc.yaml").read_text()
    return root


def stale(root: Path) -> list[str]:
    """The no-change check `shrinkflow run` makes (the copy's code is this checkout's: same files, same keys)."""
    params = config.load(root)
    return staleness.stale_stages(root, params, staleness.read_record(root), localstore.local_uri(root),
                                  lambda name, version: True)


def append_comment(path: Path) -> str:
    before = path.read_text()
    path.write_text(before + "\n# an edit that changes no behaviour\n")
    return before


def assert_edits_leave_every_stage_cached(project: Path, rels: tuple[str, ...]) -> None:
    """Each edit in turn changes no key; then `shrinkflow run`, with all of them, answers "up to date"."""
    before = {}
    try:
        for rel in rels:
            before[rel] = append_comment(project / rel)
            assert stale(project) == [], rel
        again = shrinkflow(project, "run", extra_env=code_env(project))
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "up to date" in again.stdout
        assert stage_states(again.stdout) == {name: "Cached" for name in STAGE_NAMES}
    finally:
        for rel, text in before.items():
            (project / rel).write_text(text)


def test_editing_the_readers_the_project_does_not_use_leaves_every_stage_cached(project):
    assert_edits_leave_every_stage_cached(project, READERS_NOT_RUN)


def test_editing_transformer_code_a_cnn_project_does_not_run_leaves_every_stage_cached(project):
    assert_edits_leave_every_stage_cached(project, TRANSFORMER_CODE)


def test_editing_the_idx_reader_reruns_the_data_stage_and_nothing_after_it(project):
    """Last in this module: it reruns the data stage (its outputs come out byte-identical)."""
    data_before = content_hash(project / DATA_DIR)
    append_comment(project / "steps/sources/idx.py")
    assert stale(project) == ["data"]
    again = shrinkflow(project, "run", extra_env=code_env(project))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert stage_states(again.stdout) == {name: "Completed" if name == "data" else "Cached" for name in STAGE_NAMES}
    assert content_hash(project / DATA_DIR) == data_before


RUN_STAGES = """
import importlib, json, os, runpy, sys, traceback
root, out, stages = sys.argv[1], sys.argv[2], sys.argv[3:]
for heavy in PRELOAD:  # third-party only: each stage's process then loads just its own `steps` modules
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m == "steps" or m.startswith("steps.")]
loaded = {}
for stage in stages:
    read, write = os.pipe()
    if os.fork() == 0:  # the stage's own process, as `python -m steps.<stage>` (what DVC runs)
        os.close(read)
        sys.argv, code = [f"steps.{stage}", "--root", root], 0
        try:
            runpy.run_module(f"steps.{stage}", run_name="__main__", alter_sys=True)
        except BaseException:
            traceback.print_exc()
            code = 1
        import steps
        assert steps.__file__.startswith(root), f"steps imported from {steps.__file__}, not the project's copy"
        os.write(write, " ".join(m for m in sys.modules if m == "steps" or m.startswith("steps.")).encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        loaded[stage] = pipe.read().split()
    if os.wait()[1] != 0:
        sys.exit(f"stage {stage} failed")
with open(out, "w") as fh:
    json.dump(loaded, fh)
""".replace("PRELOAD", repr(("torch", "torch_pruning", "mlflow", "onnx", "onnxruntime", "pandas", "pydantic",
                             "safetensors.torch", "PIL.Image", "dvc.repo")))


def test_every_module_a_stage_imports_is_in_its_key(tmp_path, idx_dir):
    """Each stage as DVC runs it, in its own process (forked after the third-party imports, which every stage
    would repeat): every `steps` module loaded once it has run is in its key for these params."""
    root = copy_project(tmp_path / "project", tiny_params(idx_dir, experiment="code-keys-run"))
    env = {**os.environ, "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RUN_STAGES, str(root), str(out), *STAGE_NAMES], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded, params = json.loads(out.read_text()), config.load(root)
    assert list(loaded) == list(STAGE_NAMES)
    for st in STAGES:
        assert {imports.relative_file(m) for m in loaded[st.name]} - set(st.code(params)) == set(), st.name
