"""int8 ViTs: static quantization keeps LayerNorm's parameters in float (only the matrix products go int8), and
both int8 files stay close to fp32; a CNN is still quantized everywhere, as before."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from steps.compression import onnx_export, quantization
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec


def _producers(path) -> tuple[dict[str, str], list]:
    graph = onnx.load(str(path)).graph
    return {out: node.op_type for node in graph.node for out in node.output}, list(graph.node)


def _export(spec: ModelSpec, tmp_path):
    torch.manual_seed(0)
    model = build(spec).eval()
    fp32 = tmp_path / f"{spec.name}.onnx"
    onnx_export.export(model, torch.zeros(2, 1, 28, 28), fp32)
    return model, fp32


def test_static_int8_vit_quantizes_matmuls_only_and_stays_close(tmp_path, one_thread):
    model, fp32 = _export(ModelSpec(name="vit", embed_dim=32, depth=2, heads=4), tmp_path)
    x = torch.randn(64, 1, 28, 28)
    for method in quantization.METHODS:
        out = tmp_path / f"vit.{method}.onnx"
        quantization.quantize(fp32, out, method, quantization.calibration_slice(x.numpy(), 32, 0))
        onnx_export.check(out)
        logits = onnx_export.predict(onnx_export.session(out, 1), x.numpy())
        with torch.no_grad():
            assert np.abs(logits - model(x).numpy()).max() < 0.2, method
    producers, nodes = _producers(tmp_path / "vit.static.onnx")
    norms = [n for n in nodes if n.op_type == "LayerNormalization"]
    assert norms and all(producers.get(n.input[1]) != "DequantizeLinear" for n in norms)  # float scale and bias
    matmuls = [n for n in nodes if n.op_type == "MatMul"]
    assert any(producers.get(i) == "DequantizeLinear" for n in matmuls for i in n.input)


def test_static_int8_cnn_still_quantizes_every_op(tmp_path, one_thread):
    _, fp32 = _export(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]), tmp_path)
    out = tmp_path / "cnn.static.onnx"
    quantization.quantize(fp32, out, "static", np.random.default_rng(0).normal(size=(16, 1, 28, 28)).astype("f4"))
    producers, nodes = _producers(out)
    assert any(n.op_type == "MaxPool" and producers.get(n.input[0]) == "DequantizeLinear" for n in nodes)
