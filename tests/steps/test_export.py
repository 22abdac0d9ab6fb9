import json

import numpy as np
import torch

from steps import export
from steps.compression import onnx_export
from steps.core.datasets import load_splits, raw_split, read_manifest
from steps.core.hashing import sha256
from steps.core.layout import MANIFEST, metrics_path, onnx_path
from steps.core.names import ModelRole
from steps.core.results import ExportResult
from steps.core.torchkit import load_model


def test_export_writes_checked_onnx_files_that_match_pytorch(project_after, stage_params):
    root = project_after("distill")
    result = export.run(stage_params, root)
    assert set(result.models) == {"teacher", "pruned", "student"}
    for role, m in result.models.items():
        assert (root / onnx_path(ModelRole(role))).is_file()
        assert m["argmax_mismatches"] == 0 and m["max_abs_diff"] <= stage_params.export.parity_atol
        assert m["images"] == 200  # the whole (synthetic) test split
    assert ExportResult.read(root / metrics_path("export")) == result


def test_the_onnx_files_take_raw_pixels_and_carry_their_contract(project_after, stage_params):
    """What an edge device gets: pixel values 0-255 in, the class names and normalisation in metadata_props; on
    raw pixels each file predicts what PyTorch predicts on the normalised images the pipeline evaluates."""
    root = project_after("export")
    pixels, _ = raw_split(root, "test")
    normalised = load_splits(root, ("test",))["test"].x
    manifest = read_manifest(root)
    for role in ModelRole:
        path = root / onnx_path(role)
        logits = onnx_export.predict(onnx_export.session(path, 1), pixels.astype(np.float32))
        with torch.no_grad():
            expected = load_model(root, role)[0].eval()(normalised).numpy()
        assert (logits.argmax(1) == expected.argmax(1)).all()
        assert np.abs(logits - expected).max() <= stage_params.export.parity_atol
        props = onnx_export.metadata(path)
        assert json.loads(props["class_names"]) == manifest["classes"]
        assert json.loads(props["normalization"])["mean"] == manifest["normalization"]["mean"]
        assert props["dataset_digest"] == sha256(root / MANIFEST)
        assert "raw pixel values 0-255" in props["input_layout"]
