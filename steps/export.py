"""Export step: every model to ONNX, taking raw inputs, checked by onnx.checker and compared with PyTorch on the
test split.

Each file's graph starts with the data's scaling and standardisation (steps/compression/raw_input.py), so it
takes what a caller has (pixel values 0-255, unscaled features), and its metadata_props carry the input
contract: class names, input layout, normalisation and the dataset's digest (steps/serving/contract.py).

A file that fails the checker, or whose logits differ from PyTorch's by more
than `export.parity_atol` or that changes any prediction, fails the stage
with the numbers and is removed, so nothing downstream sees it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import measure, onnx_export
from steps.compression.raw_input import RawInput
from steps.core import datasets, lineage
from steps.core.hashing import sha256
from steps.core.layout import metrics_path, onnx_path
from steps.core.names import ModelRole
from steps.core.results import ExportResult
from steps.core.torchkit import load_model


def export_one(model, x: torch.Tensor, y: torch.Tensor, path: Path, cfg: config.ExportConfig, threads: int,
               contract=None) -> dict:
    """Export, check and compare one model; the file is deleted again when it fails a check.

    With the data's input `contract` (the pipeline), the file takes raw inputs (`x`: raw pixels or unscaled
    features): its graph starts with the data's scaling and standardisation, and its metadata_props carry the
    contract. Without one (benchmarks comparing models), it takes what the model takes.
    """
    if contract is not None:
        model = RawInput(model, list(contract.mean), list(contract.std), contract.images)
    metadata = contract.onnx_metadata() if contract is not None else None
    onnx_export.export(model, x[:2], path, cfg.opset, cfg.exporter, metadata=metadata)
    try:
        onnx_export.check(path)
        parity = onnx_export.parity(model, onnx_export.session(path, threads), x, y)
        onnx_export.verify_parity(parity, cfg.parity_atol, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return {**parity.to_dict(), "file_bytes": measure.file_size(path), "sha256": sha256(path)}


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> ExportResult:
    torch.set_num_threads(params.threads)
    cfg = params.export
    raw_x, raw_y = datasets.raw_split(root, "test")
    x = torch.from_numpy(raw_x[: cfg.parity_images].astype("float32"))
    y = torch.from_numpy(raw_y[: cfg.parity_images].astype("int64"))
    contract = datasets.contract(root)
    models = {role.value: export_one(load_model(root, role)[0], x, y, root / onnx_path(role), cfg, params.threads,
                                     contract)
              for role in ModelRole}
    with tracking.open_run(root, **lineage.stage_run(root, params, "export", origin)) as run_id:
        tracking.log_metrics({f"{role}.{k}": v for role, m in models.items() for k, v in m.items() if k != "sha256"})
    result = ExportResult(models=models, opset=cfg.opset, exporter=cfg.exporter, mlflow_run_id=run_id)
    result.write(root / metrics_path("export"))
    return result


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("export", run, sys.argv[1:])


if __name__ == "__main__":
    main()
