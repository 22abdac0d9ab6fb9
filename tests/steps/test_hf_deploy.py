"""Export, quantize and evaluate on an hf model (issue 26): the ONNX file's token-id interface that serving relies
on, its parity with PyTorch at other batch sizes and lengths than it was traced with, a dynamic int8 file, and an
evaluation with macro-F1 and recall per named class."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from rich.console import Console
from sklearn.metrics import f1_score  # a cross-check of macro_f1 (scikit-learn comes with MLflow)

from steps import config, data, evaluate, export, quantize, teacher, tracking
from steps.compression import onnx_export
from steps.compression.training import predict_logits
from steps.core import datasets
from steps.core.layout import REPORT, metrics_path, onnx_path, variant_path
from steps.core.names import ModelRole
from steps.core.reports import table
from steps.core.results import ExportResult, QuantizeResult
from steps.core.stats.classes import macro_f1, per_class_f1
from steps.core.torchkit import load_model, save_model
from tests.helpers import write_params
from steps.serving.contract import Contract
from tests.steps.test_hf_teacher import HAM, SPAM, raw_params

MAX_LENGTH = 16
LEGAL = "contract clause party signed court notice counsel terms".split()


def imbalanced_texts(root: Path) -> Path:
    """ham 30, spam 12 and legal 6 texts from word pools that share no word: imbalanced, as mail is."""
    rng = random.Random(0)
    rows = [(" ".join(rng.choices(pool, k=rng.randint(3, 7))), kind)
            for pool, kind, n in ((HAM, "ham", 30), (SPAM, "spam", 12), (LEGAL, "legal", 6)) for _ in range(n)]
    rng.shuffle(rows)
    path = root / "mail.csv"
    pd.DataFrame(rows, columns=["body", "kind"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """data -> teacher (a tiny BERT) -> pruned and student as copies of it -> export -> quantize (dynamic int8)."""
    root = tmp_path_factory.mktemp("hf-deploy")
    raw = raw_params(imbalanced_texts(root))
    raw["data"].update(val_size=9, test_fraction=0.25, max_length=MAX_LENGTH)
    raw["teacher"]["train"].update(epochs=4)
    raw["quantize"].update(methods=["dynamic"], deploy="dynamic", max_accuracy_drop=0.2)
    write_params(root, raw)
    data.run(config.load(root, stage="data"), root)
    teacher.run(config.load(root, stage="teacher"), root)
    model, spec = load_model(root, ModelRole.TEACHER)
    for role in (ModelRole.PRUNED, ModelRole.STUDENT):
        save_model(root, role, model, spec, {"copy_of": "teacher"})
    export.run(config.load(root, stage="export"), root)
    quantize.run(config.load(root, stage="quantize"), root)
    return root


def _dims(value_info) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _tokens(batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random token ids with padding at the end of every other row (mask 0 there)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[::2, length // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_the_onnx_file_takes_token_ids_by_name_with_dynamic_batch_and_sequence(project: Path):
    proto = onnx.load(str(project / onnx_path(ModelRole.STUDENT)))
    inputs = {i.name: i for i in proto.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask"]
    for value in inputs.values():
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert _dims(value) == ["batch", "sequence"]
    (logits,) = proto.graph.output
    assert logits.name == "logits" and logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(logits) == ["batch", 3]
    meta = onnx_export.metadata(project / onnx_path(ModelRole.STUDENT))
    manifest = datasets.read_manifest(project)
    assert json.loads(meta["class_names"]) == manifest["classes"]
    assert json.loads(meta["tokenizer"])["sha256"] == manifest["tokenizer"]["sha256"]
    assert "the texts through tokenizer.json" in meta["input_layout"]  # the caller tokenises: no text in the graph
    assert Contract.from_dict(json.loads(meta["shrinkflow.contract"])) == datasets.contract(project)
    result = ExportResult.read(project / metrics_path("export"))
    test_size = len(datasets.load_splits(project, ("test",))["test"])
    for role in ModelRole:  # parity on the whole test split, token ids as the data stage wrote them
        m = result.models[role.value]
        assert m["images"] == test_size and m["argmax_mismatches"] == 0 and m["max_abs_diff"] < 1e-4


@pytest.mark.parametrize(("batch", "length"), [(1, 5), (7, MAX_LENGTH)])
def test_onnx_runtime_matches_pytorch_at_other_batches_and_lengths(project: Path, batch: int, length: int):
    model, _ = load_model(project, ModelRole.STUDENT)
    tokens = _tokens(batch, length, seed=batch)
    expected = predict_logits(model, tokens).numpy()
    got = onnx_export.predict(onnx_export.session(project / onnx_path(ModelRole.STUDENT), 1), tokens)
    assert got.shape == (batch, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("exporter", "opset"), [("torchscript", 17), ("dynamo", 18)])
def test_both_exporters_give_the_interface_and_keep_the_mask_when_traced_without_padding(
        tmp_path: Path, project: Path, exporter: str, opset: int):
    """Traced on rows with no padding, a graph must still mask padding: transformers skips the mask for such rows
    outside tracing. The torch.export-based exporter (export.exporter: dynamo) works on BERT too, in about 3 s."""
    model, _ = load_model(project, ModelRole.STUDENT)
    path = tmp_path / f"{exporter}.onnx"
    unpadded = {"input_ids": torch.randint(5, 60, (2, MAX_LENGTH)), "attention_mask": torch.ones(2, MAX_LENGTH).long()}
    onnx_export.export(model, unpadded, path, opset=opset, exporter=exporter)
    proto = onnx_export.check(path)
    assert [(i.name, _dims(i)) for i in proto.graph.input] == [("input_ids", ["batch", "sequence"]),
                                                                ("attention_mask", ["batch", "sequence"])]
    tokens = _tokens(3, 9, seed=1)  # padded rows
    got = onnx_export.predict(onnx_export.session(path, 1), tokens)
    np.testing.assert_allclose(got, predict_logits(model, tokens).numpy(), atol=1e-4, rtol=0)


def test_dynamic_int8_quantizes_the_matrix_products_and_runs_smaller(project: Path):
    result = QuantizeResult.read(project / metrics_path("quantize"))
    fp32, int8 = result.variants["fp32"], result.variants["dynamic"]
    assert int8["file_bytes"] < fp32["file_bytes"] and int8["size_ratio"] < 1
    assert result.deployable == variant_path("dynamic")
    path = project / variant_path("dynamic")
    ops = {node.op_type for node in onnx_export.check(path).graph.node}
    assert "MatMulInteger" in ops  # the Linear layers run in int8...
    graph = onnx_export.check(path).graph
    gathered = {node.input[0] for node in graph.node if node.op_type == "Gather"}
    tables = {t.name: t.data_type for t in graph.initializer if t.name in gathered and len(t.dims) == 2}
    assert tables and set(tables.values()) == {onnx.TensorProto.FLOAT}  # ...the embedding tables stay float
    tokens = _tokens(4, 11, seed=2)
    int8_logits = onnx_export.predict(onnx_export.session(path, 1), tokens)
    fp32_logits = onnx_export.predict(onnx_export.session(project / variant_path("fp32"), 1), tokens)
    assert int8_logits.shape == (4, 3) and np.abs(int8_logits - fp32_logits).max() < 0.05
    x, y = datasets.onnx_split(project, "test")
    by_hand = (onnx_export.session(path, 1).run(["logits"], x)[0].argmax(1) == y).mean()
    assert int8["accuracy"] == pytest.approx(by_hand)


def test_evaluate_reports_macro_f1_and_recall_per_named_class(project: Path):
    evaluate.run(config.load(project, stage="evaluate"), project)
    report = json.loads((project / REPORT).read_text())
    test = datasets.load_splits(project, ("test",))["test"]
    classes = datasets.read_manifest(project)["classes"]
    assert classes == ["ham", "legal", "spam"]
    for role in ModelRole:
        m = report["models"][role]
        predicted = predict_logits(load_model(project, role)[0], test.x).argmax(1).numpy()
        assert m["macro_f1"] == pytest.approx(f1_score(test.y.numpy(), predicted, average="macro"))
        assert sorted(m["class_recall"]) == sorted(classes)
        assert m["file_bytes"] > 0 and m["macs"] > 0
        # latency at the configured batch on (batch, max_length) token ids, in PyTorch and ONNX Runtime
        assert {"eager", "onnxruntime"} <= set(m["latency"]) and "batch_1" in m["latency"]["onnxruntime"]
    assert "dynamic" in report["deploy"]["variants"]
    assert (project / "plots" / "pareto.png").is_file()
    console = Console(record=True, width=250)
    console.print(table(report))  # what python -m steps.evaluate prints
    shown = console.export_text()
    assert "macro-F1" in shown and f"{report['models']['student']['macro_f1']:.2%}" in shown
    tracking.use_store(project)
    logged = tracking.run_record(report["mlflow_run_id"]).data.metrics
    assert logged["student.macro_f1"] == pytest.approx(report["models"]["student"]["macro_f1"])


def test_macro_f1_by_hand_with_a_class_never_predicted_and_one_absent():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    # class 0: TP 2, FP 1, FN 1 -> 4/6; class 1: TP 2, FP 1, FN 0 -> 4/5; class 2 never predicted: 0;
    # class 3 neither occurs nor is predicted: not counted
    f1 = per_class_f1(y_true, y_pred, 4)
    np.testing.assert_allclose(f1[:3], [4 / 6, 4 / 5, 0.0])
    assert np.isnan(f1[3])
    assert macro_f1(y_true, y_pred, 4) == pytest.approx((4 / 6 + 4 / 5 + 0.0) / 3)
    assert macro_f1(y_true, y_true, 4) == 1.0
    with pytest.raises(ValueError, match="y_pred has class indices outside"):
        macro_f1(y_true, np.array([0, 0, 1, 1, 1, 4]), 4)


def test_the_deploy_stages_read_hf_checkpoints_as_folders(tmp_path: Path):
    """DVC would refuse a stage whose dependency models/teacher.safetensors an hf project never writes."""
    from steps.core.dag import dvc_yaml
    from steps.core.layout import model_dir, model_path

    params = config.validate(raw_params(tmp_path / "mail.csv"), stage="export")
    stages = dvc_yaml(params)["stages"]
    for name in ("export", "evaluate"):
        deps = stages[name]["deps"]
        assert model_dir(ModelRole.TEACHER) in deps and model_dir(ModelRole.PRUNED) in deps, name
        assert model_path(ModelRole.TEACHER) not in deps and model_path(ModelRole.PRUNED) not in deps, name
