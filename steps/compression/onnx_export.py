"""PyTorch -> ONNX: export with a dynamic batch axis, check the file, prove it computes the same thing.

Exporter: torch 2.13's TorchScript-based exporter (`dynamo=False`, opset 17)
by default. It exports the dense, the structurally pruned (narrower layers)
and the distilled models of every architecture here in about 0.1 s each; the
torch.export-based one (`dynamo`) works too but takes about 1 s per model
and needs opset 18. PyTorch deprecates the TorchScript exporter; `exporter:
dynamo` in params.yaml is the way off it.

Every exported file passes `onnx.checker` (full check, with shape inference)
and a parity check against PyTorch on real images: the largest absolute logit
difference and the number of images whose predicted class differs.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from steps.compression.families.checkpoint import atomic_write

INPUT, OUTPUT = "x", "logits"
Exporter = Literal["torchscript", "dynamo"]


class ExportError(ValueError):
    """A model cannot be exported, or the exported file is invalid or disagrees with PyTorch."""


def _export(model: nn.Module, example: torch.Tensor, target, opset: int, exporter: Exporter) -> None:
    # An example of batch 2: with batch 1 a tracer may specialise the batch dimension away.
    example = example[:2] if len(example) >= 2 else example.repeat(2, *([1] * (example.dim() - 1)))
    with warnings.catch_warnings():
        # Known and accepted: the TorchScript exporter's deprecation notice (see the module docstring).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        if exporter == "dynamo":
            torch.onnx.export(model, (example,), target, dynamo=True, opset_version=opset, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              external_data=False, verbose=False)
        else:
            torch.onnx.export(model, (example,), target, dynamo=False, opset_version=opset, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})


def export(model: nn.Module, example: torch.Tensor, path: Path, opset: int = 17,
           exporter: Exporter = "torchscript", metadata: dict[str, str] | None = None) -> None:
    """Write `model` as ONNX to `path` (atomically); input `x` and output `logits` have a dynamic batch axis,
    and `metadata` becomes the file's metadata_props.

    A model that cannot be exported raises ExportError naming the innermost
    layer that fails on its own, and the exporter's reason.
    """
    model = model.cpu()
    with _eval_mode(model):
        try:
            atomic_write(Path(path), lambda tmp: _export_with_metadata(model, example, tmp, opset, exporter, metadata))
        except Exception as err:
            where = failing_layer(model, example, opset, exporter)
            place = f"layer {where!r}" if where else f"the forward of {type(model).__name__} itself (no single layer)"
            raise ExportError(f"cannot export {type(model).__name__} to ONNX (opset {opset}, {exporter} exporter): "
                              f"{place} fails: {_first_line(err)}") from err


def _export_with_metadata(model: nn.Module, example: torch.Tensor, target: Path, opset: int, exporter: Exporter,
                          metadata: dict[str, str] | None) -> None:
    _export(model, example, str(target), opset, exporter)
    if metadata:
        set_metadata(target, metadata)


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace `path`'s metadata_props by `metadata` (in place)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file."""
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Eval mode, restored afterwards; not inference_mode, since the tracer must see ordinary tensors."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def failing_layer(model: nn.Module, example: torch.Tensor, opset: int, exporter: Exporter) -> str | None:
    """The deepest submodule that fails to export on its own, with the inputs it sees in the model.

    Only runs after the whole model failed; it tries submodules deepest first,
    so the first failure has no failing child and is the layer to blame.
    """
    inputs: dict[str, tuple] = {}

    def record(name: str):
        def hook(module, args, output) -> None:  # returning anything would replace the layer's output
            inputs.setdefault(name, args)
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # a model that cannot even run: leave the exporter's own error to speak
        return None
    finally:
        for hook in hooks:
            hook.remove()
    for name in sorted(inputs, key=lambda n: -n.count(".")):
        args = inputs[name]
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                _export(model.get_submodule(name), args[0], io.BytesIO(), opset, exporter)
        except Exception:
            return name
    return None


def check(path: Path):
    """Load `path` and run onnx.checker (full check: shape inference too); the ModelProto, or ExportError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file missing (did the export stage run?)")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # protobuf DecodeError, onnx ValidationError, shape inference errors
        raise ExportError(f"{path}: not a valid ONNX model: {_first_line(err)}") from None
    return model


def session(path: Path, threads: int):
    """An ONNX Runtime CPU session at a fixed thread count, all graph optimisations on.

    Spinning is off: idle worker threads that spin would steal the cores from
    whatever is timed next (other models, PyTorch), skewing side-by-side latency.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initializers etc. are not ours to fix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(sess, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits for all of `x`, in batches."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([sess.run([OUTPUT], {INPUT: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_diff: float
    argmax_mismatches: int
    onnx_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def parity(model: nn.Module, sess, x: torch.Tensor, y: torch.Tensor) -> Parity:
    """ONNX Runtime vs PyTorch on the same images."""
    from steps.compression.training import predict_logits

    expected = predict_logits(model.cpu(), x).numpy()
    got = predict(sess, x.numpy())
    return Parity(images=len(x), max_abs_diff=float(np.abs(got - expected).max()),
                  argmax_mismatches=int((got.argmax(1) != expected.argmax(1)).sum()),
                  onnx_accuracy=float((got.argmax(1) == y.numpy()).mean()))


def verify_parity(result: Parity, atol: float, where: Path) -> None:
    """Raise ExportError with the numbers when ONNX Runtime and PyTorch disagree."""
    if result.argmax_mismatches or result.max_abs_diff > atol:
        raise ExportError(f"{where}: ONNX Runtime disagrees with PyTorch on {result.images} test images: "
                          f"max |logit difference| {result.max_abs_diff:.3g} (limit {atol:g}), predicted class "
                          f"differs on {result.argmax_mismatches} image(s)")
