"""A tiny text project for the served-text tests: the data and teacher stages on short ham/spam texts, and the
student's ONNX file made here the way the export contract describes it (input_ids and attention_mask, int64,
dynamic batch and sequence axes -> logits), until the export stage makes it for hf models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from steps import data, teacher
from steps.core import datasets
from steps.core.hashing import sha256
from steps.core.layout import FP32, REPORT, metrics_path, model_dir, onnx_path
from steps.core.results import EvaluateReport, QuantizeResult
from steps.core.names import ModelRole
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model
from tests.helpers import write_params
from tests.steps.test_hf_teacher import raw_params, texts


def text_project(root: Path) -> Path:
    """Data and teacher stages on the ham/spam texts; the teacher's folder copied as the student's, and its ONNX
    file."""
    write_params(root, raw_params(texts(root)))
    run_stage_main("data", data.run, ["--root", str(root)])
    run_stage_main("teacher", teacher.run, ["--root", str(root)])
    shutil.copytree(root / model_dir(ModelRole.TEACHER), root / model_dir(ModelRole.STUDENT))
    export_onnx(root, ModelRole.STUDENT)
    return root


def export_onnx(root: Path, role: ModelRole) -> Path:
    model, spec = load_model(root, role)
    model.eval()
    ids = torch.full((2, spec.max_length), spec.pad_token_id, dtype=torch.long)
    mask = torch.ones_like(ids)
    path = root / onnx_path(role)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}}
    torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes=axes, dynamo=False)
    return path


def evaluated(root: Path) -> None:
    """metrics/report.json and metrics/quantize.json as the evaluate and quantize stages write them for this
    student (its ONNX file in ONNX Runtime on the tokenised test split; the teacher by its PyTorch model), until
    those stages run on hf models: what the promote stage reads."""
    manifest = datasets.read_manifest(root)
    test = datasets.load_splits(root, ("test",))["test"]
    y = test.y.numpy()
    session = ort.InferenceSession(str(root / onnx_path(ModelRole.STUDENT)), providers=["CPUExecutionProvider"])
    student = session.run(["logits"], {k: v.numpy() for k, v in test.x.items()})[0].argmax(1)
    teacher_model, _ = load_model(root, ModelRole.TEACHER)
    with torch.no_grad():
        teacher = teacher_model(**test.x).argmax(1).numpy()
    onnx_file = root / onnx_path(ModelRole.STUDENT)
    parameters = sum(p.numel() for p in teacher_model.parameters())

    def metrics(predicted: np.ndarray) -> dict:
        recall = {c: float((predicted[y == i] == i).mean()) for i, c in enumerate(manifest["classes"])}
        return {"accuracy": float((predicted == y).mean()), "parameters": parameters,
                "file_bytes": onnx_file.stat().st_size, "latency_p95_ms": 1.0, "class_recall": recall}

    EvaluateReport(models={ModelRole.STUDENT: metrics(student), ModelRole.TEACHER: metrics(teacher)}, threads=1,
                   latency_batch_size=1, latency_backend="onnxruntime", test_images=len(y), deploy={},
                   mlflow_run_id="").write(root / REPORT)
    accuracy = float((student == y).mean())
    QuantizeResult(variants={FP32: {"file": onnx_path(ModelRole.STUDENT), "accuracy": accuracy, "accuracy_drop": 0.0,
                                    "file_bytes": onnx_file.stat().st_size, "size_ratio": 1.0,
                                    "sha256": sha256(onnx_file)}},
                   deploy="none", deployable=onnx_path(ModelRole.STUDENT), eval_images=len(y), calibration_images=0,
                   max_accuracy_drop=0.0, mlflow_run_id="").write(root / metrics_path("quantize"))
