"""A Hugging Face causal language model's forward pass as ONNX: export, parity with PyTorch, int8, scoring.

The graph's interface, which a perplexity scorer relies on:

    inputs  input_ids       int64 (batch, sequence)
            attention_mask  int64 (batch, sequence), 1 for a token, 0 for padding
    output  logits          float32 (batch, sequence, vocabulary)

batch and sequence are dynamic. There is no KV cache in or out (`use_cache=False`): a scorer runs whole
sequences, never one token at a time. Padding goes on the right: with causal attention a real token never sees a
later pad, so its logits are those of the unpadded row. Left padding would shift the positions (the model counts
them from 0 regardless of the mask) and change the logits.

Exporter: torch.export-based (`dynamo=True`), opset 18. The TorchScript one fails on Llama in transformers 5
(`aten::diff` in the mask code). On the tests' 2-layer Llama the export takes about 4 s on one thread and matches
PyTorch to about 1e-7 at other batch sizes and lengths than traced; the mask is kept although traced on rows
without padding.

The exporter stores on every node the Python stack trace that made it (absolute paths of this machine's
installation); they are dropped, so the file says nothing about where it was made and is smaller (the tiny
Llama's 440 kB were three quarters stack traces).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steps.compression.onnx_export import BATCH, SEQUENCE, ExportError, _eval_mode, _first_line, session, set_metadata
from steps.compression.onnx_export import metadata as onnx_metadata
from steps.core.files import atomic_write

# The dynamo exporter warns, once per export, that torchvision's operators are not registered (they are not used)
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

INPUT_IDS, ATTENTION_MASK, OUTPUT = "input_ids", "attention_mask", "logits"
OPSET = 18
"""The torch.export-based exporter's lowest opset (onnx_export's docstring)."""
SINGLE_FILE_BYTES = 1536 * 1024 * 1024
"""Weights up to this size go inside the .onnx file; beyond it, into one `<name>.data` file beside it. protobuf
cannot write a message over 2 GiB, and the graph itself needs room too: torch's own exporter draws the line here."""
QUANTIZED_OPS = ["MatMul"]
"""What int8 quantizes in a causal LM: the weight matrix products (attention projections, MLP, lm_head). The
embedding table (Gather) stays float: int8 there speeds nothing up and moves every token's vector. Passed
explicitly because quantization._transformer_options keys on LayerNormalization, which a Llama graph (RMSNorm,
exported as Pow/ReduceMean/...) lacks, so it would quantize the Gather too. ONNX Runtime's dynamic quantizer
converts only the MatMuls whose one input is a weight: attention's Q.K and weights.V stay float."""


class LogitsOnly(nn.Module):
    """The causal LM as a function of (input_ids, attention_mask) to logits: no cache, no other outputs, so the
    graph has exactly the interface in the module docstring."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_causal_lm(model: nn.Module, path: Path, *, example_ids: torch.Tensor, opset: int = OPSET,
                     metadata: dict[str, str] | None = None) -> None:
    """Write `model`'s forward pass as ONNX to `path` (atomically), traced on `example_ids` ((1, T) int64, T >= 2:
    the tracer would fix a length of 1 into the graph); the interface is the module docstring's, and `metadata`
    becomes the file's metadata_props. The model is moved to the CPU (as onnx_export.export does).

    Raises ExportError naming the model and the exporter's reason when it cannot be exported.
    """
    example = _example_batch(example_ids)
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise ExportError(f"export_causal_lm needs a float32 model (the graph's logits are float32); "
                          f"{type(model).__name__} is {dtype}: call .float() first")
    wrapped = LogitsOnly(model.cpu())
    with _eval_mode(wrapped):
        try:
            program = _trace(wrapped, example, opset)
        except Exception as err:
            raise ExportError(f"cannot export {type(model).__name__} to ONNX (opset {opset}, dynamo exporter): "
                              f"{_first_line(err)}") from err
    program.model.metadata_props.update(metadata or {})
    _save(program.model, Path(path))


def _example_batch(example_ids: torch.Tensor) -> torch.Tensor:
    """Two rows of the example: with a batch of 1 the tracer fixes the batch dimension to 1."""
    if not isinstance(example_ids, torch.Tensor) or example_ids.dtype != torch.int64 or example_ids.dim() != 2:
        raise ValueError(f"example_ids must be an int64 tensor (1, T); got "
                         f"{getattr(example_ids, 'dtype', type(example_ids).__name__)} "
                         f"{tuple(getattr(example_ids, 'shape', ()))}")
    if example_ids.shape[1] < 2:
        raise ValueError(f"example_ids needs at least 2 tokens (a length of 1 would be fixed into the graph); "
                         f"got shape {tuple(example_ids.shape)}")
    return example_ids[:1].repeat(2, 1)


def _trace(wrapped: nn.Module, ids: torch.Tensor, opset: int):
    dims = {0: torch.export.Dim(BATCH), 1: torch.export.Dim(SEQUENCE)}
    with warnings.catch_warnings():
        # Known and harmless: both inputs share the axes, so the exporter names them once (still batch, sequence)
        warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        return torch.onnx.export(wrapped, (), kwargs={INPUT_IDS: ids, ATTENTION_MASK: torch.ones_like(ids)},
                                 dynamo=True, opset_version=opset, input_names=[INPUT_IDS, ATTENTION_MASK],
                                 output_names=[OUTPUT], dynamic_shapes={INPUT_IDS: dims, ATTENTION_MASK: dims},
                                 verbose=False)


def _save(model, path: Path) -> None:
    """Write the onnx_ir model without the exporter's per-node debug metadata (the module docstring): one file,
    or for weights over SINGLE_FILE_BYTES the .onnx plus `<name>.data`. With external data the .onnx is written
    last and atomically, after the old one is removed, so no .onnx ever points into a half-written .data file."""
    import onnx_ir as ir

    for node in model.graph.all_nodes():
        node.metadata_props.clear()
    weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if weights <= SINGLE_FILE_BYTES:
        atomic_write(path, lambda tmp: ir.save(model, tmp, format="protobuf"))
        return
    path.unlink(missing_ok=True)  # the temporary file's name ends in .tmp, hence the explicit format
    data = f"{path.name}.data"  # relative to the .onnx's folder, which is also the temporary file's
    atomic_write(path, lambda tmp: ir.save(model, tmp, format="protobuf", external_data=data))


def ort_logits(path: Path, threads: int) -> Callable[..., np.ndarray]:
    """A scorer's view of the graph: `logits(ids)` for int64 ids (B, T), float32 (B, T, V); an attention_mask of
    the same shape may follow (1 for a token, 0 for right padding), else every position is a token."""
    sess = session(Path(path), threads)

    def logits(ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        mask = np.ones_like(ids) if attention_mask is None else np.ascontiguousarray(attention_mask, dtype=np.int64)
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"ids must be (batch, sequence) with an attention_mask of the same shape; "
                             f"got ids {ids.shape}, attention_mask {mask.shape}")
        return sess.run([OUTPUT], {INPUT_IDS: ids, ATTENTION_MASK: mask})[0]

    return logits


@dataclass(frozen=True)
class LogitsDiff:
    """How far a graph's logits are from PyTorch's on the same token ids."""

    sequences: int
    max_abs_diff: float
    argmax_agreement: float
    """The share of positions whose most likely next token is the same."""
    logit_std: float
    """PyTorch's logits' standard deviation: the scale to read max_abs_diff against."""

    def to_dict(self) -> dict:
        return asdict(self)


def compare(model: nn.Module, path: Path, ids, *, batch_size: int = 8, threads: int = 1) -> LogitsDiff:
    """PyTorch vs ONNX Runtime logits on `ids` ((N, T) int64, every position a token), in batches."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    run = ort_logits(path, threads)
    wrapped = LogitsOnly(model.cpu())
    worst, agree, total, sums, values = 0.0, 0, 0, np.zeros(2), 0
    with _eval_mode(wrapped), torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            batch = ids[i:i + batch_size]
            tokens = torch.from_numpy(batch)
            expected = wrapped(tokens, torch.ones_like(tokens)).numpy()
            got = run(batch)
            worst = max(worst, float(np.abs(got - expected).max()))
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
            total += batch.size
            sums += (float(expected.sum(dtype=np.float64)), float(np.square(expected, dtype=np.float64).sum()))
            values += expected.size
    mean, square = sums / max(values, 1)
    return LogitsDiff(sequences=len(ids), max_abs_diff=worst, argmax_agreement=agree / max(total, 1),
                      logit_std=float(max(square - mean * mean, 0.0)) ** 0.5)


def parity(model: nn.Module, path: Path, ids, *, batch_size: int = 8, threads: int = 1) -> float:
    """The largest absolute logit difference between PyTorch and ONNX Runtime on `ids` ((N, T) int64)."""
    return compare(model, path, ids, batch_size=batch_size, threads=threads).max_abs_diff


def quantize_causal_lm(fp32: Path, out: Path) -> None:
    """Write dynamic int8 of the exported graph to `out` (atomically): int8 weights in the MatMuls only
    (QUANTIZED_OPS), activations quantized per batch on the fly; the file's metadata_props are carried over.

    No quant_pre_process: the exporter already folded constants and recorded shapes, and on the test Llama the
    pre-processed and the plain graph quantize to the same logits. reduce_range (7-bit weights), as
    quantization.quantize does and for its reason: x86 CPUs without VNNI saturate the U8S8 products otherwise.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's root-logger advice to pre-process (see above)
    carried = onnx_metadata(fp32)

    def write(tmp: Path) -> None:
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, reduce_range=True,
                         op_types_to_quantize=QUANTIZED_OPS)
        if carried:
            set_metadata(tmp, carried)

    try:
        atomic_write(Path(out), write)
    finally:
        root.setLevel(level)


def metadata(manifest: dict, manifest_sha256: str) -> dict[str, str]:
    """A language model file's metadata_props: its interface, the tokenizer it reads ids of (by sha256) and the
    end-of-document token, and the data it was made from."""
    return {
        "task": "causal_lm",
        "input_layout": f"{INPUT_IDS}: int64 (batch, sequence), token ids of the tokenizer below; {ATTENTION_MASK}: "
                        "int64 (batch, sequence), 1 for a token, 0 for right padding",
        "output": f"{OUTPUT}: float32 (batch, sequence, vocabulary); position t predicts token t + 1",
        "tokenizer_sha256": manifest["tokenizer"]["sha256"],
        "end_of_text": json.dumps(manifest["separator"]),
        "max_sequence": str(manifest["block_size"]),
        "dataset": manifest["dataset"],
        "dataset_digest": manifest_sha256,
    }
