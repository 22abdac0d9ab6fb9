"""One DAG, two runners: dvc.yaml and the Prefect flow must run the stages of steps/core/dag.py."""

import contextlib
import importlib
import shutil
from types import SimpleNamespace

import pytest
import yaml

from flows import compress
from steps import config
from steps.core.dag import STAGE_NAMES, STAGES, dvc_yaml, stage
from tests.helpers import REPO, default_params

PRODUCED = ("data/", "models/", "metrics/")
"""Where stages write: an input under these must come from an earlier stage, not from the user."""


def test_committed_dvc_yaml_matches_the_pipeline():
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert committed == dvc_yaml(config.load(REPO)), "dvc.yaml is stale: run `shrinkflow dvc-yaml`"
    assert list(committed["stages"]) == list(STAGE_NAMES)


def test_dvc_reads_the_stages_deps_and_outs_of_the_pipeline(tmp_path):
    """DVC's own parse of the committed dvc.yaml, templates resolved from params.yaml as `dvc repro` resolves
    them, gives each stage's command, deps, params and outputs: the same files the Prefect flow's cache keys
    hash (Stage.resolved_deps)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    Repo.init(tmp_path, no_scm=True)
    with Repo(tmp_path) as repo:
        parsed = {s.name: s for s in repo.index.stages}
    assert list(parsed) == list(STAGE_NAMES)
    params = config.load(REPO)
    for name, dvc_stage in parsed.items():
        st = stage(name)
        files = [d.def_path for d in dvc_stage.deps if not isinstance(d, ParamsDependency)]
        keys = [key for d in dvc_stage.deps if isinstance(d, ParamsDependency) for key in d.params]
        outs = {o.def_path: ("metric" if o.metric else "plot" if o.plot else "out") for o in dvc_stage.outs}
        assert dvc_stage.cmd == f"python -m steps.{name}", name
        assert files == list(st.resolved_deps(params)), name
        assert sorted(keys) == sorted(st.params), name
        assert outs == {**{o: "out" for o in st.outs}, **{m: "metric" for m in st.metrics},
                        **{p: "plot" for p in st.plots}}, name


def test_stage_inputs_come_from_earlier_stages():
    produced: set[str] = set()
    for st in STAGES:
        for dep in st.inputs:
            if dep.startswith(PRODUCED):
                assert dep in produced, f"{st.name} reads {dep} before any stage writes it"
        produced.update(st.outs, st.metrics)


def test_every_stage_module_has_run_and_main():
    for st in STAGES:
        module = importlib.import_module(st.module)
        assert callable(module.run) and callable(module.main), st.module


class RecordingSnapshot:
    """Stands in for compress.Snapshot: records which stage the flow runs, runs none, fails where told."""

    def __init__(self, calls: list[str], fail_at: str | None = None) -> None:
        self.calls, self.fail_at, self.origins = calls, fail_at, []
        self.params = config.validate(default_params())

    def run_recorded(self, st, origin):
        self.calls.append(st.name)
        self.origins.append(origin)
        if st.name == self.fail_at:
            raise compress.StageFailed(f"stage '{st.name}' failed")
        return "Completed", {out: "hash" for out in st.outs}


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """What the flow did, in order: stage names, "publish", "open parent", "close parent" and "show <stage>" (a
    stage's tables and plots copied onto the parent run)."""
    calls: list[str] = []

    @contextlib.contextmanager
    def parent_run(*args, **kwargs):
        calls.append("open parent")
        try:
            yield "parent-run-id"
        finally:
            calls.append("close parent")

    monkeypatch.setattr(compress, "_parent_run", parent_run)
    monkeypatch.setattr(compress, "show_on_parent", lambda root, st, parent: calls.append(f"show {st.name}"))
    monkeypatch.setattr(compress, "publish", lambda *args: calls.append("publish") or 0)
    return calls


FLOW_RUN = SimpleNamespace(id="flow-run-id", name="quick-fox", deployment_id=None)


def test_flow_runs_every_stage_in_dag_order(calls):
    snapshot = RecordingSnapshot(calls)
    states, pushed, outputs = compress._run_stages("/nowhere", snapshot, None, flow_run=FLOW_RUN)
    ran = [c for c in calls if c in STAGE_NAMES]
    assert ran == list(STAGE_NAMES) and list(states) == ran and list(outputs) == ran
    produced: set[str] = set()
    for name in ran:  # the order the flow chose is one in which every input exists when its stage runs
        st = stage(name)
        assert all(dep in produced for dep in st.inputs if dep.startswith(PRODUCED)), name
        produced.update(st.outs, st.metrics)
    # MLflow's parent run opens once the data exists and spans the rest; the push precedes the registration
    assert calls.index("open parent") == calls.index(compress.DATA_STAGE) + 1 and calls[-1] == "close parent"
    assert calls.index("publish") == calls.index(compress.REGISTRY_STAGE) - 1
    assert [c for c in calls if c.startswith("show")] == ["show prune", "show evaluate"]
    assert calls.index("show evaluate") == calls.index("evaluate") + 1
    assert pushed == 0
    # every stage run names the pipeline run; those after data nest under the parent run
    assert all(o.pipeline_run == "flow-run-id" for o in snapshot.origins)
    assert [o.parent_run for o in snapshot.origins] == ["" if name == compress.DATA_STAGE else "parent-run-id"
                                                         for name in ran]


def test_a_failed_stage_stops_the_flow_before_the_next(calls):
    with pytest.raises(compress.StageFailed, match="'prune'"):
        compress._run_stages("/nowhere", RecordingSnapshot(calls, fail_at="prune"), None, flow_run=FLOW_RUN)
    assert [c for c in calls if c in STAGE_NAMES] == list(STAGE_NAMES[:STAGE_NAMES.index("prune") + 1])
    assert calls[-1] == "close parent" and "publish" not in calls


def test_promote_depends_on_the_teacher_onnx_file_it_logs_as_the_budget_reference():
    """promote logs models/teacher.onnx with a budgeted version (tracking.log_reference, issue 29): a file a stage
    reads must be one of its inputs, or DVC and the flow's cache key do not see it (and a fetch of promote's
    inputs alone leaves it out)."""
    from steps.core.layout import onnx_path
    from steps.core.names import ModelRole

    assert onnx_path(ModelRole.TEACHER) in stage("promote").inputs
