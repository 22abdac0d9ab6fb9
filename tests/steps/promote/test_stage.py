"""The promote stage against a real MLflow store: registration, aliases, deployables, the export CLI."""

import json

import numpy as np
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from steps import promote, quantize, tracking
from steps.core import lineage
import torch

from steps.core.datasets import load_splits, raw_split
from steps.core.torchkit import load_model
from steps.core.hashing import sha256
from steps.core.layout import PROMOTION, int8_path, metrics_path, model_path, onnx_path
from steps.core.names import Alias, ModelRole, Tag
from steps.registry import history
from tests.helpers import variant


def test_promote_registers_champion_then_challenger(project_after, stage_params):
    root = project_after("evaluate")
    first = promote.run(stage_params, root)
    assert first.promoted and first.alias == Alias.CHAMPION
    client = MlflowClient()
    version = client.get_model_version_by_alias(stage_params.promote.model_name, Alias.CHAMPION)
    assert int(version.version) == first.version
    assert version.tags[Tag.MODEL_SHA256] == sha256(root / model_path(ModelRole.STUDENT))
    assert version.tags[f"{Tag.ONNX_SHA256}.student.onnx"] == sha256(root / onnx_path(ModelRole.STUDENT))
    assert version.tags[Tag.DEPLOYABLE] == "student.onnx"
    # The same student again cannot beat itself: no disagreement is no evidence (issue 18: the paired test
    # replaced min_improvement, so no stricter margin is needed to refuse a tie). Run as the flow runs it: the
    # pipeline run and what triggered it come as the origin, and go into the run's tags and the history.
    origin = lineage.Origin(pipeline_run="flow-1", trigger="a test schedule")
    second = promote.run(stage_params, root, origin)
    assert not second.promoted and second.alias == Alias.CHALLENGER
    assert history.events(stage_params.promote.model_name)[-1]["trigger"] == "a test schedule"
    promote_run = client.get_run(client.get_model_version(stage_params.promote.model_name,
                                                          str(second.version)).tags[Tag.PROMOTE_RUN])
    assert promote_run.data.tags[Tag.PIPELINE_RUN] == "flow-1"
    assert "did not beat champion" in second.reason
    assert second.incumbent_version == first.version
    assert client.get_model_version_by_alias(stage_params.promote.model_name, Alias.CHAMPION).version == version.version
    assert json.loads((root / PROMOTION).read_text())["version"] == second.version


def test_registered_champion_takes_raw_pixels_and_answers_with_class_names(project_after, stage_params):
    root = project_after("promote")
    tracking.use_store(root)
    name = stage_params.promote.model_name
    model = tracking.load_predictor(name, tracking.aliases(name)[Alias.CHAMPION])
    raw, _ = raw_split(root, "test")  # uint8 (N, 1, 28, 28), 0-255: what a caller has
    classes = json.loads((root / "data/processed/manifest.json").read_text())["classes"]
    expected = load_splits(root, ("test",))["test"]
    student = load_model(root, ModelRole.STUDENT)[0].eval()
    for n in (1, 5):
        answer = model.predict(raw[:n, 0])  # (N, H, W), as Pillow and IDX files give one-channel images
        assert list(answer.columns) == ["label", "class_index", *classes]
        with torch.no_grad():
            wanted = student(expected.x[:n]).argmax(1).numpy()
        assert answer["class_index"].tolist() == wanted.tolist()
        assert answer["label"].tolist() == [classes[i] for i in wanted]
        assert np.allclose(answer[classes].sum(axis=1), 1.0)
    logits = model.predict(raw[:3], params={"output": "logits"})  # (N, C, H, W) works too
    assert list(logits.columns) == classes and logits.to_numpy().argmax(1).tolist() == \
        student(expected.x[:3]).argmax(1).tolist()


def test_export_cli_writes_the_champions_onnx_files_checked_against_their_hashes(project_after, stage_params,
                                                                                  tmp_path):
    root = project_after("promote")
    name = stage_params.promote.model_name
    result = CliRunner().invoke(app, ["export", f"models:/{name}@champion", "--format", "onnx", "-o",
                                      str(tmp_path / "out"), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "student.onnx").read_bytes() == (root / onnx_path(ModelRole.STUDENT)).read_bytes()
    bad = CliRunner().invoke(app, ["export", f"models:/{name}", "-o", str(tmp_path / "x"), "--root", str(root)])
    assert bad.exit_code == 2 and "not a model URI" in " ".join(bad.output.split())
    # Tamper with the registered artifact: the export refuses it, naming the recorded hash.
    tracking.use_store(root)
    version = MlflowClient().get_model_version_by_alias(name, Alias.CHAMPION)
    stored = next((root / "mlartifacts").rglob(f"{version.run_id}/artifacts/deploy/student.onnx"))
    stored.write_bytes(stored.read_bytes() + b"tampered")
    tampered = CliRunner().invoke(app, ["export", f"models:/{name}/{version.version}", "-o", str(tmp_path / "t"),
                                        "--root", str(root)])
    assert tampered.exit_code == 1 and "was recorded at registration" in " ".join(tampered.output.split())


def test_an_int8_deployable_is_registered_with_its_hash(project_after, stage_params):
    root = project_after("evaluate")
    static = variant(stage_params, quantize={"deploy": "static", "max_accuracy_drop": 1.0})
    quantize.run(static, root)
    decision = promote.run(static, root)
    tags = MlflowClient().get_model_version(stage_params.promote.model_name, str(decision.version)).tags
    assert tags[Tag.DEPLOYABLE] == "student.static.onnx"
    int8 = root / int8_path(ModelRole.STUDENT, "static")
    assert tags[f"{Tag.ONNX_SHA256}.student.static.onnx"] == sha256(int8)
    assert f"{Tag.ONNX_SHA256}.student.onnx" in tags  # the fp32 file is always there too


def test_metrics_files_name_their_mlflow_runs(project_after):
    root = project_after("promote")
    for stage in ("teacher", "prune", "distill", "export", "quantize"):
        assert json.loads((root / metrics_path(stage)).read_text())["mlflow_run_id"]
