"""int8 ONNX models with ONNX Runtime's quantization tools.

- dynamic: weights int8 ahead of time, activations quantized on the fly per
  batch (`quantize_dynamic`). Convolutions become ConvInteger, which ONNX
  Runtime's CPU provider runs without its optimised int8 kernels, plus a
  DynamicQuantizeLinear (a min/max pass) before every layer.
- static: weights and activations int8 with scales fixed by calibration on a
  seeded slice of training images, stored as QuantizeLinear/DequantizeLinear
  pairs (QDQ format) that ONNX Runtime fuses into QLinearConv/QLinearMatMul.

Both start from ONNX Runtime's recommended pre-processing (`quant_pre_process`:
symbolic shape inference and graph optimisation, e.g. Conv+BN fused), so the
quantizer sees the graph that will run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from steps.compression.families.checkpoint import atomic_write
from steps.compression.onnx_export import INPUT, ExportError, feed, set_metadata
from steps.compression.onnx_export import metadata as onnx_metadata
from steps.compression.training import count, rows

Method = Literal["dynamic", "static"]
METHODS: tuple[str, ...] = ("dynamic", "static")


def calibration_slice(x, size: int, seed: int):
    """`size` samples drawn from `x` (an array, or named arrays of as many rows: token ids) without replacement
    by a seeded generator: the same seed, the same slice; as the graph's feed types them (onnx_export.feed)."""
    if size > count(x):
        raise ValueError(f"calibration needs {size} images but the training split has only {count(x)}")
    picked = rows(x, np.sort(np.random.default_rng(seed).permutation(count(x))[:size]))
    return feed(picked) if isinstance(picked, dict) else feed(picked)[INPUT]


def _reader(images, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class SliceReader(CalibrationDataReader):
        """Feeds the calibration images to the quantizer in batches."""

        def __init__(self) -> None:
            self._batches = iter(rows(images, slice(i, i + batch_size)) for i in range(0, count(images), batch_size))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else feed(batch)

    return SliceReader()


TRANSFORMER_OPS = ["MatMul", "Gemm", "Conv"]
"""What int8 quantizes in a transformer (a graph with LayerNormalization): the matrix products only. Dynamic
int8 would otherwise also store a text model's embedding tables (Gather) in 7 bits per tensor, which no
kernel speeds up and which costs accuracy. Static int8 quantizing everything put QDQ pairs around LayerNorm, Softmax and the residual adds, whose outputs int8
cannot hold (per-channel scales for a LayerNorm's 1-d weight even failed: "Axis 1 is out-of-range"), and a
4-block ViT's logits moved by 0.29; MatMul-only is ONNX Runtime's own advice for transformers."""


def _transformer_options(prepared: Path) -> dict:
    import onnx

    ops = {node.op_type for node in onnx.load(str(prepared), load_external_data=False).graph.node}
    return {"op_types_to_quantize": TRANSFORMER_OPS} if "LayerNormalization" in ops else {}


def quantize(fp32: Path, out: Path, method: Method, calibration: np.ndarray | None = None,
             batch_size: int = 64) -> None:
    """Write the int8 version of `fp32` to `out` (atomically). `static` needs calibration images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "static" and (calibration is None or count(calibration) == 0):
        raise ValueError("static quantization needs calibration images")
    with tempfile.TemporaryDirectory(prefix="shrinkflow-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            # auto_merge: a text model's graph slices its position ids to min(max positions, sequence), which
            # symbolic shape inference cannot prove equal to the sequence axis ("Incomplete symbolic shape
            # inference") unless it may merge the two; graphs without such a conflict come out the same.
            quant_pre_process(str(fp32), str(prepared), auto_merge=True)
        except Exception as err:
            raise ExportError(f"{fp32}: ONNX Runtime's quantization pre-processing failed: {err}") from err

        def write(tmp: Path) -> None:
            # reduce_range (7-bit weights) in both modes: without it the U8S8 products saturate on x86 CPUs
            # without VNNI (AVX2 / AVX-512 VPMADDUBSW, as ONNX Runtime's quantization docs warn). On an AMD EPYC
            # without VNNI a random 2-block ViT's logits moved by 0.60 (dynamic) and 0.65 (static) without it,
            # by 0.04 and 0.09 with it; a small CNN's by 0.027 and 0.006 (static).
            if method == "dynamic":
                quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, reduce_range=True,
                                 **_transformer_options(prepared))
            else:
                # S8S8 (signed activations and weights) in QDQ: ONNX Runtime's recommended default on x86 CPUs.
                quantize_static(str(prepared), str(tmp), _reader(calibration, batch_size),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                                **_transformer_options(prepared))
            carried = onnx_metadata(fp32)  # the input contract: quantizing keeps the graph's input, so it still holds
            if carried:
                set_metadata(tmp, carried)

        atomic_write(Path(out), write)


def op_times_ms(path: Path, batch, threads: int, runs: int) -> dict[str, float]:
    """Mean time per run spent in each ONNX Runtime kernel type (from its profiler), slowest first.

    Says *why* one model is slower than another: e.g. ConvInteger and
    DynamicQuantizeLinear in a dynamically quantized CNN.
    """
    import json

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="shrinkflow-prof-") as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        options.log_severity_level = 3
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = feed(batch)
        sess.run(None, inputs)  # warm-up, counted out below
        for _ in range(runs):
            sess.run(None, inputs)
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals: dict[str, float] = {}
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_node: dict[str, list[tuple[str, float]]] = {}
    for e in kernels:
        per_node.setdefault(e["name"], []).append((e["args"]["op_name"], e["dur"] / 1e3))
    for timings in per_node.values():
        op, durations = timings[0][0], [d for _, d in timings[1:]]  # drop the warm-up run
        totals[op] = totals.get(op, 0.0) + sum(durations) / max(len(durations), 1)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
