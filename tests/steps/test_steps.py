"""Each step on tiny synthetic data, called directly (no Prefect, no DVC), in order."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from steps import config, data, distill, evaluate, export, promote, prune, quantize, teacher, tracking
from steps.names import Alias, ModelRole, Tag
from steps.pipeline import PROMOTION, REPORT, int8_path, metrics_path, model_path, onnx_path, spec_path
from steps.steputil import load_model
from tests.conftest import tiny_params


@pytest.fixture(scope="module")
def root(tmp_path_factory, idx_dir) -> Path:
    """One project root that the tests below fill stage by stage."""
    return tmp_path_factory.mktemp("steps")


@pytest.fixture(scope="module")
def params(idx_dir) -> config.Params:
    return config.validate(tiny_params(idx_dir, experiment="step-tests"))


def test_data(root, params):
    manifest = data.run(params, root)
    assert manifest["files"]["train.npz"]["rows"] == 500


def test_teacher_learns_and_logs(root, params):
    metrics = teacher.run(params, root)
    assert metrics["val_accuracy"] > 0.5  # synthetic classes are easy; chance is 0.1
    assert (root / model_path(ModelRole.TEACHER)).is_file() and (root / spec_path(ModelRole.TEACHER)).is_file()
    tracking.use_store(root)
    run = MlflowClient().get_run(metrics["mlflow_run_id"])
    assert run.data.tags[Tag.STAGE] == "teacher"
    assert run.info.artifact_uri.startswith((root / "mlartifacts").as_uri())  # inside the project, not ./mlruns
    assert run.data.params["teacher.train.epochs"] == "2"
    history = MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]


def test_prune_reaches_target_with_a_curve(root, params):
    metrics = prune.run(params, root)
    assert metrics["sparsity"] == pytest.approx(params.prune.target_sparsity, abs=1e-3)
    assert [p["round"] for p in metrics["curve"]] == [1, 2]
    model, _ = load_model(root, ModelRole.PRUNED)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    tracking.use_store(root)
    sparsity_curve = MlflowClient().get_metric_history(metrics["mlflow_run_id"], "sparsity")
    assert [m.value for m in sorted(sparsity_curve, key=lambda m: m.step)][0] == 0.0
    assert len(sparsity_curve) == params.prune.rounds + 1


def test_distill_trains_a_different_architecture(root, params):
    metrics = distill.run(params, root)
    assert metrics["val_accuracy"] > 0.3
    _, spec = load_model(root, ModelRole.STUDENT)
    assert spec.name == "mlp"


def test_export_writes_checked_onnx_files_that_match_pytorch(root, params):
    result = export.run(params, root)
    assert set(result["models"]) == {"teacher", "pruned", "student"}
    for role, m in result["models"].items():
        assert (root / onnx_path(ModelRole(role))).is_file()
        assert m["argmax_mismatches"] == 0 and m["max_abs_diff"] <= params.export.parity_atol
        assert m["images"] == 200  # the whole (synthetic) test split


def test_quantize_writes_int8_variants_and_names_the_deployable(root, params):
    result = quantize.run(params, root)
    assert list(result["variants"]) == ["fp32", "dynamic", "static"]
    assert result["deployable"] == onnx_path(ModelRole.STUDENT)  # deploy: fp32 by default
    for method in ("dynamic", "static"):
        assert (root / int8_path(ModelRole.STUDENT, method)).is_file()
        assert result["variants"][method]["file_bytes"] < result["variants"]["fp32"]["file_bytes"]


def test_evaluate_compares_all_three(root, params):
    report = evaluate.run(params, root)
    assert set(report["models"]) == {"teacher", "pruned", "student"}
    for m in report["models"].values():  # eager and ONNX Runtime side by side, batch 1 and the large batch
        assert set(m["latency"]) == {"eager", "onnxruntime"}
        assert all(set(by_batch) == {"batch_1", "batch_16"} for by_batch in m["latency"].values())
        assert m["latency_p50_ms"] == m["latency"]["onnxruntime"]["batch_16"]["p50"]  # the default backend
    assert set(report["deploy"]["variants"]) == {"fp32", "dynamic", "static"}
    pruned, teacher_m = report["models"]["pruned"], report["models"]["teacher"]
    assert pruned["nonzeros"] < teacher_m["nonzeros"] == teacher_m["parameters"]
    assert pruned["compressed_bytes"] < teacher_m["compressed_bytes"]
    assert json.loads((root / REPORT).read_text())["models"]["student"]["accuracy"] > 0.1
    assert (root / "plots/pareto.png").stat().st_size > 0


def test_promote_registers_champion_then_challenger(root, params):
    first = promote.run(params, root)
    assert first["promoted"] and first["alias"] == Alias.CHAMPION
    client = MlflowClient()
    version = client.get_model_version_by_alias(params.promote.model_name, Alias.CHAMPION)
    assert int(version.version) == first["version"]
    assert version.tags[Tag.MODEL_SHA256] == data.sha256(root / model_path(ModelRole.STUDENT))
    assert version.tags[f"{Tag.ONNX_SHA256}.student.onnx"] == data.sha256(root / onnx_path(ModelRole.STUDENT))
    assert version.tags[Tag.DEPLOYABLE] == "student.onnx"
    # The same student again cannot beat itself by the required margin.
    stricter = config.validate({**params.model_dump(mode="json"),
                                "promote": {**params.promote.model_dump(), "min_improvement": 0.01}})
    second = promote.run(stricter, root)
    assert not second["promoted"] and second["alias"] == Alias.CHALLENGER
    assert "did not beat champion" in second["reason"]
    assert second["incumbent_version"] == first["version"]
    assert client.get_model_version_by_alias(params.promote.model_name, Alias.CHAMPION).version == version.version
    assert json.loads((root / PROMOTION).read_text())["version"] == second["version"]


def test_registered_champion_predicts_any_batch_size(root, params):
    import mlflow
    import numpy as np

    tracking.use_store(root)
    model = mlflow.pyfunc.load_model(f"models:/{params.promote.model_name}@{Alias.CHAMPION}")
    test = data.load_splits(root, ("test",))["test"]
    for n in (1, 5):
        assert np.asarray(model.predict(test.x[:n].numpy())).shape == (n, 10)


def test_export_cli_writes_the_champions_onnx_files_checked_against_their_hashes(root, params, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    name = params.promote.model_name
    result = CliRunner().invoke(app, ["export", f"models:/{name}@champion", "--format", "onnx", "-o",
                                      str(tmp_path / "out"), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "student.onnx").read_bytes() == (root / onnx_path(ModelRole.STUDENT)).read_bytes()
    bad = CliRunner().invoke(app, ["export", f"models:/{name}", "-o", str(tmp_path / "x"), "--root", str(root)])
    assert bad.exit_code == 2 and "not a model URI" in " ".join(bad.output.split())
    # Tamper with the registered artifact: the export refuses it, naming the recorded hash.
    version = MlflowClient().get_model_version_by_alias(name, Alias.CHAMPION)
    stored = next((root / "mlartifacts").rglob(f"{version.run_id}/artifacts/deploy/student.onnx"))
    stored.write_bytes(stored.read_bytes() + b"tampered")
    tampered = CliRunner().invoke(app, ["export", f"models:/{name}/{version.version}", "-o", str(tmp_path / "t"),
                                        "--root", str(root)])
    assert tampered.exit_code == 1 and "was recorded at registration" in " ".join(tampered.output.split())


def test_an_int8_deployable_is_registered_with_its_hash(root, params):
    static = variant(params, quantize={"deploy": "static", "max_accuracy_drop": 1.0})
    quantize.run(static, root)
    decision = promote.run(static, root)
    tags = MlflowClient().get_model_version(params.promote.model_name, str(decision["version"])).tags
    assert tags[Tag.DEPLOYABLE] == "student.static.onnx"
    int8 = root / int8_path(ModelRole.STUDENT, "static")
    assert tags[f"{Tag.ONNX_SHA256}.student.static.onnx"] == data.sha256(int8)
    assert f"{Tag.ONNX_SHA256}.student.onnx" in tags  # the fp32 file is always there too
    quantize.run(params, root)


def test_quantize_stops_when_the_deployable_int8_loses_too_much():
    variants = {"fp32": {"file": "models/student.onnx", "accuracy": 0.90, "accuracy_drop": 0.0},
                "static": {"file": "models/int8/student.static.onnx", "accuracy": 0.88, "accuracy_drop": 0.02}}
    quantize.check_tolerance(variants, "static", 0.02, 100)
    quantize.check_tolerance(variants, "fp32", 0.0, 100)
    with pytest.raises(ValueError, match=r"student\.static\.onnx: the deployable static int8 model loses 0\.0200 "
                                         r"accuracy vs fp32 \(0\.8800 vs 0\.9000 on 100 test images\); "
                                         r"quantize\.max_accuracy_drop is 0\.01"):
        quantize.check_tolerance(variants, "static", 0.01, 100)


def test_metrics_files_exist(root):
    for stage in ("teacher", "prune", "distill"):
        assert "mlflow_run_id" in json.loads((root / metrics_path(stage)).read_text())


def test_gates_fail_with_the_gate_named():
    gates = [promote.Gate("min_accuracy", 0.5, 0.9, False), promote.Gate("max_param_ratio", 0.1, 0.2, True)]
    promoted, reason = promote.decide(gates, 0.5, None, 0.0)
    assert not promoted and "min_accuracy" in reason and "max_param_ratio" not in reason
    assert promote.decide(gates[1:], 0.8, None, 0.0) == (True, "passed all gates; no champion yet")
    assert promote.decide(gates[1:], 0.8, 0.85, 0.0)[0] is False
    assert promote.decide(gates[1:], 0.86, 0.85, 0.0)[0] is True


# --- variants of the prune and distill steps, on the same data and teacher -------------------------------------


def variant(params: config.Params, **sections) -> config.Params:
    raw = params.model_dump(mode="json")
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    return config.validate(raw)


def test_structured_prune_removes_channels(root, params):
    from steps.compression import measure

    teacher_model, _ = load_model(root, ModelRole.TEACHER)
    structured = variant(params, prune={"method": "structured", "importance": "taylor", "target_sparsity": 0.5,
                                        "scope": "layer", "schedule": "linear"})
    metrics = prune.run(structured, root)
    pruned, spec = load_model(root, ModelRole.PRUNED)
    assert spec.channels == [8, 16]  # the spec stays the original; the loader shrinks layers to the saved shapes
    assert pruned.features[0].out_channels < teacher_model.features[0].out_channels
    assert metrics["parameters"] == measure.parameters(pruned) < measure.parameters(teacher_model)
    x = data.load_splits(root, ("test",))["test"].x[:4]
    assert measure.macs(pruned, x[:1]) < measure.macs(teacher_model, x[:1])
    assert pruned(x).shape == (4, 10)


def test_structured_prune_rounds_widths_without_compounding_over_rounds(root, params):
    rounded = variant(params, prune={"method": "structured", "importance": "l1", "target_sparsity": 0.3,
                                     "scope": "layer", "schedule": "linear", "rounds": 2, "round_to": 4})
    prune.run(rounded, root)
    pruned, _ = load_model(root, ModelRole.PRUNED)
    # 8/16 channels and 32 neurons keep 70%, rounded down to multiples of 4, from the ORIGINAL widths: 4/8 and 20.
    # Rounding each round's current widths instead would end at 4/8 and 16.
    assert [pruned.features[0].out_channels, pruned.features[4].out_channels] == [4, 8]
    assert pruned.classifier[1].out_features == 20


def test_distill_with_hints_and_attention_from_the_unpruned_teacher(root, params):
    student = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}
    featured = variant(params, distill={
        "teacher": "teacher", "student": student,
        "hints": {"weight": 1.0, "layers": [{"student": "features.6", "teacher": "features.6"}]},
        "attention": {"weight": 10.0, "layers": [{"student": "features.2", "teacher": "features.2"}]},
    })
    metrics = distill.run(featured, root)
    assert metrics["teacher"] == "teacher"
    assert metrics["val_accuracy"] > 0.3


def test_distill_names_a_layer_that_does_not_exist(root, params):
    bad = variant(params, distill={
        "student": {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True},
        "hints": {"weight": 1.0, "layers": [{"student": "features.99", "teacher": "features.6"}]},
    })
    with pytest.raises(ValueError, match="features.99"):
        distill.run(bad, root)


def test_teacher_with_l1_logs_emerging_sparsity(root, params):
    sparse = variant(params, teacher={"train": {**params.teacher.train.model_dump(),
                                                "l1": {"coefficient": 0.01, "target": "weights"}}})
    from steps.compression.regularization import near_zero_fraction

    metrics = teacher.run(sparse, root)
    history = MlflowClient().get_metric_history(metrics["mlflow_run_id"], "near_zero_fraction")
    assert len(history) == params.teacher.train.epochs
    with_l1 = near_zero_fraction(load_model(root, ModelRole.TEACHER)[0], "weights")
    teacher.run(params, root)
    without = near_zero_fraction(load_model(root, ModelRole.TEACHER)[0], "weights")
    assert with_l1 > without + 0.05
