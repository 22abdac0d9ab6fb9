"""Quantize step: ONNX Runtime int8 versions of the student, their accuracy against fp32, and the deployable file.

Each method in `quantize.methods` writes `models/int8/student.<method>.onnx`.
Accuracy of fp32 and of every int8 file is measured with ONNX Runtime on
the test split; the file chosen by `quantize.deploy` (with a budget: the
precision the search chose, metrics/prune.json) must stay within
`quantize.max_accuracy_drop` of fp32 or the stage fails with the numbers.
Latency is not measured here: the evaluate step times every file side by
side. metrics/quantize.json names the deployable file for the promote step.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from steps import config, tracking
from steps.compression import measure, onnx_export, quantization
from steps.compression.training import count, rows
from steps.core import datasets, lineage
from steps.core.hashing import sha256
from steps.core.layout import FP32, INT8_DIR, metrics_path, variant_path
from steps.core.results import PruneResult, QuantizeResult


def onnx_accuracy(path: Path, x, y: np.ndarray, threads: int) -> float:
    """Accuracy of an ONNX file on `x` (an array, or named token arrays) with ONNX Runtime."""
    return float((onnx_export.predict(onnx_export.session(path, threads), x).argmax(1) == y).mean())


def deployment(params: config.Params, root: Path) -> tuple[list[str], str]:
    """(the int8 methods to build, the deployable variant): quantize.methods and quantize.deploy, or, with a
    budget, the precision the search chose (built too if quantize.methods lacks it)."""
    cfg = params.quantize
    if not params.target.active:
        return list(cfg.methods), cfg.deploy
    chosen = PruneResult.read(root / metrics_path("prune")).deploy_precision
    if chosen is None:
        raise ValueError(f"{metrics_path('prune')} holds no budget search although params.yaml sets target: "
                         "rerun the prune stage")
    return [*cfg.methods, *([chosen] if chosen not in (FP32, *cfg.methods) else [])], chosen


def build(params: config.Params, root: Path, methods: list[str]) -> tuple[dict[str, dict], int]:
    """Write the int8 files; ({variant: {file, accuracy, accuracy_drop, file_bytes, ...}}, test images used).

    fp32 comes first."""
    cfg = params.quantize
    out_dir = root / INT8_DIR
    shutil.rmtree(out_dir, ignore_errors=True)  # a method dropped from params must not leave its file behind
    out_dir.mkdir(parents=True)
    # The ONNX files take raw inputs (their graphs standardise) or token ids (datasets.onnx_split), so they are
    # calibrated and scored on those.
    calibration = None
    if "static" in methods:
        train_x = datasets.onnx_split(root, "train")[0]
        calibration = quantization.calibration_slice(train_x, min(cfg.calibration_images, count(train_x)),
                                                     params.seed)
    fp32 = root / variant_path(FP32)
    onnx_export.check(fp32)
    for method in methods:
        quantization.quantize(fp32, root / variant_path(method), method, calibration)
        onnx_export.check(root / variant_path(method))
    test_x, test_y = datasets.onnx_split(root, "test")
    x, y = rows(test_x, slice(0, cfg.eval_images)), test_y[: cfg.eval_images]
    variants = {}
    for name in (FP32, *methods):
        path = root / variant_path(name)
        variants[name] = {"file": variant_path(name), "accuracy": onnx_accuracy(path, x, y, params.threads),
                          "file_bytes": measure.file_size(path), "sha256": sha256(path)}
    for name, v in variants.items():
        v["accuracy_drop"] = variants[FP32]["accuracy"] - v["accuracy"]
        v["size_ratio"] = v["file_bytes"] / variants[FP32]["file_bytes"]
    return variants, len(y)


LANGUAGE_METHODS = ("dynamic",)
"""The int8 methods for a language model: dynamic (weights int8, activations quantized per call), MatMul only."""


def build_language(params: config.Params, root: Path, methods: list[str]) -> tuple[dict[str, dict], int]:
    """A language model's int8 files (lm_onnx.quantize_causal_lm: the weight MatMuls, embeddings left float) and
    each file's next-token accuracy and perplexity on every test block by ONNX Runtime;
    quantize.max_accuracy_drop then bounds the next-token accuracy lost."""
    from steps.compression import language, lm_onnx

    refused = [m for m in methods if m not in LANGUAGE_METHODS]
    if refused:
        raise ValueError(f"quantize.methods {refused}: a language model is quantized by "
                         f"{' or '.join(LANGUAGE_METHODS)} (static calibration of every activation is not built for "
                         "it); set quantize.methods: [dynamic]")
    if params.quantize.eval_images is not None:
        raise ValueError(f"quantize.eval_images {params.quantize.eval_images}: a language model's files are scored on "
                         "every test block, the blocks evaluate scores the teacher on (promote's perplexity gate "
                         "divides the two); remove it")
    out_dir = root / INT8_DIR
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    fp32 = root / variant_path(FP32)
    onnx_export.check(fp32)
    for method in methods:
        lm_onnx.quantize_causal_lm(fp32, root / variant_path(method))
    blocks = datasets.load_blocks(root, "test", datasets.read_manifest(root))
    images = len(blocks["input_ids"])
    variants = {}
    for name in (FP32, *methods):
        path = root / variant_path(name)
        scores = language.score_split(lm_onnx.ort_logits(path, params.threads), blocks)
        variants[name] = {"file": variant_path(name), "accuracy": scores.metrics["next_token_accuracy"],
                          "perplexity": scores.metrics["perplexity"], "bits_per_byte": scores.metrics["bits_per_byte"],
                          "file_bytes": measure.file_size(path), "sha256": sha256(path)}
    for v in variants.values():
        v["accuracy_drop"] = variants[FP32]["accuracy"] - v["accuracy"]
        v["perplexity_ratio"] = v["perplexity"] / variants[FP32]["perplexity"]
        v["size_ratio"] = v["file_bytes"] / variants[FP32]["file_bytes"]
    return variants, images


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> QuantizeResult:
    cfg = params.quantize
    methods, deploy = deployment(params, root)
    language = datasets.task(datasets.read_manifest(root)) == "causal_lm"
    variants, images = (build_language(params, root, methods) if language else build(params, root, methods))
    with tracking.open_run(root, **lineage.stage_run(root, params, "quantize", origin)) as run_id:
        tracking.log_metrics({f"{name}.{k}": v for name, m in variants.items() for k, v in m.items()
                              if isinstance(v, float | int)})
    result = QuantizeResult(variants=variants, deploy=deploy, deployable=variant_path(deploy), eval_images=images,
                            calibration_images=cfg.calibration_images, max_accuracy_drop=cfg.max_accuracy_drop,
                            mlflow_run_id=run_id)
    result.write(root / metrics_path("quantize"))
    check_tolerance(variants, deploy, cfg.max_accuracy_drop, images)
    return result


def check_tolerance(variants: dict[str, dict], deploy: str, max_drop: float, images: int) -> None:
    """ValueError with the numbers when the deployable file loses more accuracy vs fp32 than allowed."""
    drop = variants[deploy]["accuracy_drop"]
    if drop > max_drop:
        raise ValueError(f"{variants[deploy]['file']}: the deployable {deploy} int8 model loses {drop:.4f} accuracy "
                         f"vs fp32 ({variants[deploy]['accuracy']:.4f} vs {variants[FP32]['accuracy']:.4f} on "
                         f"{images} test images); quantize.max_accuracy_drop is {max_drop}")


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("quantize", run, sys.argv[1:])


if __name__ == "__main__":
    main()
