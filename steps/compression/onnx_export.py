"""PyTorch -> ONNX: export with a dynamic batch axis, check the file, prove it computes the same thing.

A model takes one tensor (images, feature vectors: the graph's input `x`, float32, dynamic batch) or named
tensors (a text model's token ids: the graph's inputs `input_ids` and `attention_mask`, int64, dynamic batch
and sequence); the output is `logits`, float32 (batch, classes). Which one is decided by the example
(`training.Inputs`), whose form the data's kind decided (steps/core/datasets.py load_splits, onnx_split).

Exporter: torch 2.13's TorchScript-based exporter (`dynamo=False`, opset 17)
by default. It exports the dense, the structurally pruned (narrower layers)
and the distilled models of every architecture here in about 0.1 s each; the
torch.export-based one (`dynamo`) works too but takes about 1 s per model
and needs opset 18. PyTorch deprecates the TorchScript exporter; `exporter:
dynamo` in params.yaml is the way off it. On a Hugging Face BERT
(transformers 5.25, torch 2.13) both export with dynamic batch and sequence
axes and match PyTorch to 1e-8 at other batch sizes and lengths than traced:
TorchScript in about 0.2 s for a 2-layer one, dynamo in about 3.5 s. Both keep
the attention mask when traced on rows without padding (transformers drops
the mask for such rows only outside tracing).

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
from steps.compression.training import Inputs, count, forward, rows

INPUT, OUTPUT = "x", "logits"
Exporter = Literal["torchscript", "dynamo"]
BATCH, SEQUENCE = "batch", "sequence"
"""The dynamic axes' names: every input's first axis; a named input's (token ids') second one too."""


class ExportError(ValueError):
    """A model cannot be exported, or the exported file is invalid or disagrees with PyTorch."""


def input_axes(example: Inputs) -> dict[str, dict[int, str]]:
    """{graph input name: its dynamic axes}: `x` with a dynamic batch, or each named tensor (token ids and
    attention mask, (batch, sequence)) under its own name with dynamic batch and sequence."""
    if isinstance(example, dict):
        return {name: {0: BATCH, 1: SEQUENCE} for name in example}
    return {INPUT: {0: BATCH}}


def _batch_of_two(example: Inputs) -> Inputs:
    """An example of batch 2: with batch 1 a tracer may specialise the batch dimension away."""
    def two(t: torch.Tensor) -> torch.Tensor:
        return t[:2] if len(t) >= 2 else t.repeat(2, *([1] * (t.dim() - 1)))

    return {name: two(t) for name, t in example.items()} if isinstance(example, dict) else two(example)


def _export(model: nn.Module, example: Inputs, target, opset: int, exporter: Exporter) -> None:
    example = _batch_of_two(example)
    axes = input_axes(example)
    # named inputs go in as keyword arguments, so the graph's input names are the forward's parameter names
    args, kwargs = ((), example) if isinstance(example, dict) else ((example,), None)
    with warnings.catch_warnings():
        # Known and accepted: the TorchScript exporter's deprecation notice (see the module docstring).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        # transformers' attention, traced: it compares the mask's length with the keys' (one sequence axis here,
        # so always equal) and asks whether a causal mask may replace a missing one (the mask is never missing);
        # the parity check on the test split is what proves the traced graph right
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning,
                                module=r"transformers\.(masking_utils|integrations\.sdpa_attention)")
        if exporter == "dynamo":
            dims = {BATCH: torch.export.Dim(BATCH), SEQUENCE: torch.export.Dim(SEQUENCE)}
            shapes = {name: {axis: dims[dim] for axis, dim in axis_names.items()} for name, axis_names in axes.items()}
            torch.onnx.export(model, args, target, kwargs=kwargs, dynamo=True, opset_version=opset,
                              input_names=list(axes), output_names=[OUTPUT],
                              dynamic_shapes=shapes if kwargs is not None else tuple(shapes.values()),
                              external_data=False, verbose=False)
        else:
            torch.onnx.export(model, args, target, kwargs=kwargs, dynamo=False, opset_version=opset,
                              input_names=list(axes), output_names=[OUTPUT],
                              dynamic_axes={**axes, OUTPUT: {0: BATCH}})


def export(model: nn.Module, example: Inputs, path: Path, opset: int = 17,
           exporter: Exporter = "torchscript", metadata: dict[str, str] | None = None) -> None:
    """Write `model` as ONNX to `path` (atomically); its inputs (input_axes: `x`, or token ids by name) and output
    `logits` have a dynamic batch axis, and `metadata` becomes the file's metadata_props.

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


def _export_with_metadata(model: nn.Module, example: Inputs, target: Path, opset: int, exporter: Exporter,
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


def failing_layer(model: nn.Module, example: Inputs, opset: int, exporter: Exporter) -> str | None:
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
            forward(model, example)
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


def session(path: Path, threads: int, provider: str = "CPUExecutionProvider"):
    """An ONNX Runtime session at a fixed thread count, all graph optimisations on; on the CPU provider unless
    `provider` names another (accelerator.onnx_provider: CUDA's, with the CPU for the nodes it cannot run).

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
    from steps.compression.accelerator import session_providers

    with warnings.catch_warnings():  # an absent provider is refused below, by name, not warned about
        warnings.filterwarnings("ignore", message="Specified provider", category=UserWarning)
        sess = ort.InferenceSession(str(path), options, providers=session_providers(provider))
    _check_provider(sess.get_providers(), provider, path)
    return sess


class ProviderUnavailable(RuntimeError):
    """ONNX Runtime did not start the execution provider a session asked for."""


def _check_provider(running: list[str], provider: str, path: Path) -> None:
    """ONNX Runtime falls back to the CPU, with a warning only, when it cannot start a provider (CUDA's without
    its CUDA or cuDNN libraries): a latency timed there would be reported as the GPU's. Refused instead."""
    if not running or running[0] != provider:
        raise ProviderUnavailable(f"{path}: ONNX Runtime did not start {provider} (it runs {', '.join(running)}): "
                                  "install the CUDA and cuDNN libraries onnxruntime-gpu needs, or set device: cpu")


def feed(x) -> dict[str, np.ndarray]:
    """The ONNX Runtime feed of one batch: `x` as float32 (images, features), or named token ids and attention
    mask as int64 (numpy arrays or tensors), as input_axes names the graph's inputs."""
    if isinstance(x, dict):
        return {name: np.ascontiguousarray(_numpy(t), dtype=np.int64) for name, t in x.items()}
    return {INPUT: np.ascontiguousarray(_numpy(x), dtype=np.float32)}


def _numpy(t) -> np.ndarray:
    return t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def predict(sess, x, batch_size: int = 1024) -> np.ndarray:
    """Logits for all of `x` (an array, or named arrays: see `feed`), in batches."""
    n = count(x)
    return np.concatenate([sess.run([OUTPUT], feed(rows(x, slice(i, i + batch_size))))[0]
                           for i in range(0, n, batch_size)])


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_diff: float
    argmax_mismatches: int
    onnx_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def parity(model: nn.Module, sess, x: Inputs, y: torch.Tensor) -> Parity:
    """ONNX Runtime vs PyTorch on the same samples (images, feature vectors or token ids; `images` counts them)."""
    from steps.compression.training import predict_logits

    expected = predict_logits(model.cpu(), x).numpy()
    got = predict(sess, x)
    return Parity(images=count(x), max_abs_diff=float(np.abs(got - expected).max()),
                  argmax_mismatches=int((got.argmax(1) != expected.argmax(1)).sum()),
                  onnx_accuracy=float((got.argmax(1) == y.numpy()).mean()))


def verify_parity(result: Parity, atol: float, where: Path) -> None:
    """Raise ExportError with the numbers when ONNX Runtime and PyTorch disagree."""
    if result.argmax_mismatches or result.max_abs_diff > atol:
        raise ExportError(f"{where}: ONNX Runtime disagrees with PyTorch on {result.images} test images: "
                          f"max |logit difference| {result.max_abs_diff:.3g} (limit {atol:g}), predicted class "
                          f"differs on {result.argmax_mismatches} image(s)")
