"""Export step: every model to ONNX, taking raw inputs, checked by onnx.checker and compared with PyTorch on the
test split.

Each file's graph starts with the data's scaling and standardisation (steps/compression/raw_input.py), so it
takes what a caller has (pixel values 0-255, unscaled features), and its metadata_props carry the input
contract: class names, input layout, normalisation and the dataset's digest (steps/serving/contract.py).
Text is the exception the data's kind decides (`graph_for`): tokenising is string processing that standard
ONNX operators do not do, so the graph starts at the token ids and the caller tokenises, with the data's
tokenizer.json that travels beside the model (the served pyfunc does, with the `tokenizers` library); its
metadata_props name that tokenizer and its sha256. The text graph's interface, which serving relies on:

    inputs  input_ids       int64 (batch, sequence)
            attention_mask  int64 (batch, sequence), 1 for a token, 0 for padding
    output  logits          float32 (batch, classes), in the order of class_names

batch and sequence are dynamic; sequence at most the data's max_length (the model's positions are sized by it).

A file that fails the checker, or whose logits differ from PyTorch's by more
than `export.parity_atol` or that changes any prediction, fails the stage
with the numbers and is removed, so nothing downstream sees it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from steps import config, tracking
from steps.compression import lm_onnx, measure, onnx_export
from steps.compression.raw_input import RawInput
from steps.compression.training import Inputs, rows
from steps.core import datasets, lineage
from steps.core.hashing import sha256
from steps.core.layout import MANIFEST, metrics_path, onnx_path
from steps.core.names import ModelRole
from steps.core.results import ExportResult
from steps.core.torchkit import load_model


@dataclass(frozen=True)
class Graph:
    """What the deployable ONNX file is made of, as the data's kind decides: the module exported around the model
    (`wrap`) and the file's metadata_props."""

    wrap: Callable[[nn.Module], nn.Module]
    metadata: dict[str, str]


def graph_for(root: Path) -> Graph:
    """Images and tables: the model behind the data's scaling and standardisation (RawInput), with the input
    contract as metadata. Text: the model itself on token ids, with what to tokenise with as metadata."""
    contract = datasets.contract(root)
    if contract.texts:  # token ids in, as they are (the module docstring)
        return Graph(lambda model: model, contract.onnx_metadata())
    return Graph(lambda model: RawInput(model, list(contract.mean), list(contract.std), contract.images),
                 contract.onnx_metadata())


def export_one(model, x: Inputs, y: torch.Tensor, path: Path, cfg: config.ExportConfig, threads: int,
               graph: Graph | None = None) -> dict:
    """Export, check and compare one model; the file is deleted again when it fails a check.

    With the data's `graph` (the pipeline), the file takes what a caller has (`x`, datasets.onnx_split: raw
    pixels, unscaled features, or token ids) and its metadata_props say what that is. Without one (benchmarks
    comparing models), it takes what the model takes.
    """
    if graph is not None:
        model = graph.wrap(model)
    onnx_export.export(model, rows(x, slice(0, 2)), path, cfg.opset, cfg.exporter,
                       metadata=graph.metadata if graph is not None else None)
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
    if datasets.task(datasets.read_manifest(root)) == "causal_lm":
        return run_language_models(params, root, origin)
    raw_x, raw_y = datasets.onnx_split(root, "test")
    x = to_tensors(rows(raw_x, slice(0, cfg.parity_images)))
    y = torch.from_numpy(raw_y[: cfg.parity_images].astype("int64"))
    graph = graph_for(root)
    models = {role.value: export_one(load_model(root, role)[0], x, y, root / onnx_path(role), cfg, params.threads,
                                     graph)
              for role in ModelRole}
    with tracking.open_run(root, **lineage.stage_run(root, params, "export", origin)) as run_id:
        tracking.log_metrics({f"{role}.{k}": v for role, m in models.items() for k, v in m.items() if k != "sha256"})
    result = ExportResult(models=models, opset=cfg.opset, exporter=cfg.exporter, mlflow_run_id=run_id)
    result.write(root / metrics_path("export"))
    return result


def run_language_models(params: config.Params, root: Path, origin: lineage.Origin) -> ExportResult:
    """Language models (data.task causal_lm): each model's forward pass by the dynamo exporter (the TorchScript one
    fails on Llama in transformers 5), token ids and mask in, logits per token out (lm_onnx.py), compared with
    PyTorch on the first export.parity_images test blocks (all when null)."""
    cfg = params.export
    manifest = datasets.read_manifest(root)
    ids = torch.from_numpy(datasets.load_blocks(root, "test", manifest)["input_ids"][: cfg.parity_images]).long()
    metadata = lm_onnx.metadata(manifest, sha256(root / MANIFEST))
    models = {}
    for role in ModelRole:
        model, path = load_model(root, role)[0], root / onnx_path(role)
        lm_onnx.export_causal_lm(model.hf, path, example_ids=ids[:1], opset=max(cfg.opset, lm_onnx.OPSET),
                                 metadata=metadata)
        try:
            onnx_export.check(path)
            diff = lm_onnx.compare(model.hf, path, ids, threads=params.threads)
            if diff.max_abs_diff > cfg.parity_atol:
                raise onnx_export.ExportError(f"{path}: logits differ from PyTorch's by up to {diff.max_abs_diff:.3g} "
                                              f"on {len(ids)} test blocks; export.parity_atol is {cfg.parity_atol}")
        except BaseException:  # nothing unverified is left for the stages after
            for written in (path, path.with_name(path.name + ".data")):
                written.unlink(missing_ok=True)
            raise
        models[role.value] = {**diff.to_dict(), "file_bytes": measure.file_size(path), "sha256": sha256(path)}
    with tracking.open_run(root, **lineage.stage_run(root, params, "export", origin)) as run_id:
        tracking.log_metrics({f"{role}.{k}": v for role, m in models.items() for k, v in m.items()
                              if isinstance(v, int | float)})
    result = ExportResult(models=models, opset=max(cfg.opset, lm_onnx.OPSET), exporter="dynamo", mlflow_run_id=run_id)
    result.write(root / metrics_path("export"))
    return result


def to_tensors(x) -> Inputs:
    """Tensors of an array or of named arrays (datasets.onnx_split's), sharing their memory."""
    return {name: torch.from_numpy(a) for name, a in x.items()} if isinstance(x, dict) else torch.from_numpy(x)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("export", run, sys.argv[1:])


if __name__ == "__main__":
    main()
