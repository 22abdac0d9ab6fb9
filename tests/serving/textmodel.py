"""A tiny text project for the served-text tests: the data and teacher stages on short ham/spam texts, and the
student's ONNX file made here the way the export contract describes it (input_ids and attention_mask, int64,
dynamic batch and sequence axes -> logits), until the export stage makes it for hf models."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from steps import data, teacher
from steps.core.layout import model_dir, onnx_path
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
