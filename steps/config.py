"""The schema of params.yaml: one pydantic model per step section.

Every value the pipeline uses comes from here; nothing in code overrides it.
`load()` refuses a bad file before any work starts, naming the key path and
the offending value (`ConfigError`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """params.yaml (or a -S override) is invalid; the message names key and value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchConfig(_Section):
    """A model architecture by registry name (see steps.compression.models)."""

    name: Literal["mlp", "cnn", "resnet"]
    channels: list[int] = Field(default_factory=list, description="conv widths (cnn only)")
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")
    batch_norm: bool = True

    @model_validator(mode="after")
    def _widths(self) -> ArchConfig:
        if self.name == "cnn" and not self.channels:
            raise ValueError("a cnn needs at least one entry in 'channels'")
        if self.name == "mlp" and self.channels:
            raise ValueError("an mlp has no conv layers: leave 'channels' empty")
        if any(w <= 0 for w in [*self.channels, *self.hidden]):
            raise ValueError("layer widths must be positive")
        return self


class L1Config(_Section):
    """L1 sparsity regularisation while training: on weights, or on BN scales (network slimming)."""

    coefficient: float = Field(default=0.0, ge=0)
    target: Literal["weights", "bn_scale"] = "weights"


class TrainConfig(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    l1: L1Config = Field(default_factory=L1Config)


class DataConfig(_Section):
    raw_dir: str = Field(min_length=1, description="folder with the four Fashion-MNIST IDX .gz files")
    val_size: int = Field(ge=1, description="images held out of the training file for validation")
    train_limit: int | None = Field(default=None, ge=1, description="use only this many training images")
    test_limit: int | None = Field(default=None, ge=1, description="use only this many test images")


class TeacherConfig(_Section):
    arch: ArchConfig
    train: TrainConfig


class PruneConfig(_Section):
    method: Literal["magnitude", "structured"] = Field(
        default="magnitude", description="magnitude: zero single weights; structured: remove whole channels/neurons")
    scope: Literal["global", "layer"] = Field(default="global", description="one ranking for all layers, or per layer")
    importance: Literal["l1", "l2", "taylor", "bn_scale"] = Field(
        default="l1", description="channel ranking for structured pruning")
    schedule: Literal["one_shot", "linear", "geometric", "cubic"] = "cubic"
    target_sparsity: float = Field(gt=0, lt=1, description="fraction of weights (magnitude) or channels (structured)")
    rounds: int = Field(ge=1)
    finetune: TrainConfig


class LayerPair(_Section):
    student: str = Field(min_length=1)
    teacher: str = Field(min_length=1)


class FeatureLossConfig(_Section):
    """Intermediate-feature matching, layers named as in `model.named_modules()`."""

    layers: list[LayerPair] = Field(default_factory=list)
    weight: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _layers_when_weighted(self) -> FeatureLossConfig:
        if self.weight > 0 and not self.layers:
            raise ValueError("a positive weight needs at least one entry in 'layers'")
        return self


class DistillConfig(_Section):
    teacher: Literal["pruned", "teacher"] = Field(
        default="pruned", description="pruned: prune-then-distill; teacher: distill from the unpruned teacher")
    student: ArchConfig
    temperature: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1, description="weight of the soft-target term; 0 trains on labels alone")
    hints: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="FitNets hint losses")
    attention: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="attention transfer")
    train: TrainConfig


class ExportConfig(_Section):
    """PyTorch -> ONNX for every model, checked and compared with PyTorch on the test split."""

    exporter: Literal["torchscript", "dynamo"] = Field(
        default="torchscript", description="torch.onnx.export(dynamo=False) or the torch.export-based exporter")
    opset: int = Field(default=17, ge=13, le=20, description="ONNX opset (13+: per-channel int8; 20: exporter max)")
    parity_atol: float = Field(default=1e-4, gt=0, description="max |logit difference| ONNX Runtime vs PyTorch")
    parity_images: int | None = Field(default=None, ge=1, description="test images for the parity check; null = all")

    @model_validator(mode="after")
    def _dynamo_opset(self) -> ExportConfig:
        if self.exporter == "dynamo" and self.opset < 18:
            raise ValueError(f"the dynamo exporter needs opset >= 18 (got {self.opset})")
        return self


class QuantizeConfig(_Section):
    """ONNX Runtime int8 versions of the student, and which ONNX file is the deployable one."""

    methods: list[Literal["dynamic", "static"]] = Field(
        default_factory=list, description="int8 variants to build; empty = no quantization")
    calibration_images: int = Field(default=512, ge=1,
                                    description="static: a seeded slice of at most this many training images")
    eval_images: int | None = Field(default=None, ge=1, description="test images for int8 vs fp32; null = all")
    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1,
                                     description="fp32 minus int8 accuracy allowed for the deployable file")
    deploy: Literal["fp32", "dynamic", "static"] = Field(
        default="fp32", description="the ONNX file registered as the deployable one")

    @model_validator(mode="after")
    def _deploy_is_built(self) -> QuantizeConfig:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        if self.deploy != "fp32" and self.deploy not in self.methods:
            raise ValueError(f"deploy: {self.deploy} needs {self.deploy!r} in methods (methods: {self.methods})")
        return self


class EvaluateConfig(_Section):
    latency_backend: Literal["onnxruntime", "eager"] = Field(
        default="onnxruntime", description="which latency the table, the Pareto plot and the gates use")
    latency_batch_size: int = Field(ge=1)
    latency_warmup: int = Field(ge=0)
    latency_repeats: int = Field(ge=1)


class PromoteConfig(_Section):
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    min_accuracy: float = Field(ge=0, le=1)
    max_accuracy_drop: float = Field(ge=0, le=1, description="vs the teacher, in accuracy points/100")
    max_param_ratio: float = Field(gt=0, le=1, description="student params / teacher params")
    min_improvement: float = Field(ge=-1, le=1, description="accuracy gain required over @champion")


class TrackingConfig(_Section):
    experiment: str = Field(min_length=1)


class Params(_Section):
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(ge=1, description="torch CPU threads for training and latency")
    data: DataConfig
    teacher: TeacherConfig
    prune: PruneConfig
    distill: DistillConfig
    export: ExportConfig = Field(default_factory=ExportConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    evaluate: EvaluateConfig
    promote: PromoteConfig
    tracking: TrackingConfig

    def section_hash(self, *keys: str) -> str:
        """sha256 of the named top-level sections (all when none), for cache keys and tags."""
        dumped = self.model_dump(mode="json")
        chosen = {k: dumped[k] for k in keys} if keys else dumped
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r})")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e['input']!r})")
    return "\n".join(lines)


def validate(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate an already-parsed mapping; raise ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def read_raw(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`, or ConfigError naming the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load(root: Path | str = ".") -> Params:
    """Parse and validate `<root>/params.yaml`."""
    path = Path(root) / PARAMS_FILE
    return validate(read_raw(path), source=str(path))


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-S {item!r}: expected KEY=VALUE, e.g. -S teacher.train.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"-S {item!r}: value is not valid YAML: {err}") from None
    if not isinstance(parsed, (str, int, float, bool, list, dict, type(None))):
        parsed = value  # e.g. YAML 1.1 turns 2024-01-01 into a date: keep what the user typed
    return key.strip().split("."), parsed


def _set_path(tree: Any, path: list[str], value: Any, item: str) -> None:
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"-S {item!r}: {where} is not a section of params.yaml")
        node = child
    node[path[-1]] = value


def apply_overrides(root: Path | str, overrides: list[str]) -> Params:
    """Apply `-S key=value` overrides to params.yaml, as `dvc exp run -S` does.

    The file is only rewritten when the result validates, so a bad override
    loses nothing; comments and key order survive (ruamel round-trip), and
    dvc.lock then records exactly the params that ran.
    """
    from ruamel.yaml import YAML  # DVC's own YAML library; keeps comments

    path = Path(root) / PARAMS_FILE
    read_raw(path)  # clear error for a missing or malformed file
    yaml_rt = YAML()
    tree = yaml_rt.load(path.read_text())
    for item in overrides:
        keys, value = _parse_override(item)
        _set_path(tree, keys, value, item)
    params = validate(json.loads(json.dumps(tree, default=str)), source=f"{path} with -S overrides")
    from steps.compression.checkpoint import atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("w") as fh:
            yaml_rt.dump(tree, fh)

    atomic_write(path, write)  # an interrupted write never leaves a truncated params.yaml
    return params
