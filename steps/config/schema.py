"""The schema of params.yaml: one pydantic model per step section.

Every value the pipeline uses comes from here; nothing in code overrides it. Choices by name
(architecture, schedule, importance, ...) take their valid names from the registries in
`steps.compression.choices`, so a new entry there is a valid value here, with no second list.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.target import TargetConfig
from steps.sources import SOURCES

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

class ArchConfig(_Section):
    """A model architecture by registry name (see steps.compression.models)."""

    name: Literal[tuple(choices.ARCHITECTURES)]
    channels: list[int] = Field(default_factory=list, description="conv widths (cnn only)")
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")
    batch_norm: bool = True
    # vit only (steps/compression/vit.py); the names are ModelSpec's, so spec_from passes them through
    patch_size: int = Field(default=7, ge=1, description="vit: patch side in pixels; must divide the image size")
    embed_dim: int = Field(default=64, ge=1, description="vit: residual width")
    depth: int = Field(default=4, ge=1, description="vit: transformer blocks")
    heads: int = Field(default=4, ge=1, description="vit: attention heads per block; must divide embed_dim")
    mlp_ratio: float = Field(default=2.0, gt=0, description="vit: MLP hidden width / embed_dim")
    pool: Literal["cls", "mean"] = Field(default="cls", description="vit: class token or mean over tokens")
    # custom only (steps/compression/custom.py): the user's own model, built by factory(**kwargs)
    factory: str | None = Field(default=None, description='custom: "package.module:function" returning an nn.Module')
    kwargs: dict[str, Any] = Field(default_factory=dict, description="custom: keyword arguments of the factory")

    @model_validator(mode="after")
    def _custom(self) -> ArchConfig:
        if self.name != "custom":
            if self.factory is not None or self.kwargs:
                raise ValueError(f"factory and kwargs are for name: custom only (name is {self.name!r})")
            return self
        if self.factory is None or not _FACTORY.fullmatch(self.factory):
            raise ValueError(f'a custom arch needs factory: "package.module:function", got {self.factory!r}')
        if self.channels or self.hidden:
            raise ValueError("a custom arch takes its widths from kwargs: leave 'channels' and 'hidden' empty")
        return self

    @model_validator(mode="after")
    def _vit(self) -> ArchConfig:
        if self.name == "vit" and self.embed_dim % self.heads:
            raise ValueError(f"vit embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.name == "vit" and (self.channels or self.hidden):
            raise ValueError("a vit has no conv or classifier widths: leave 'channels' and 'hidden' empty")
        return self

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
    target: Literal[tuple(choices.L1_TARGETS)] = "weights"


class TrainConfig(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal[tuple(choices.LR_SCHEDULES)] = "constant"
    augment: bool = Field(default=False, description="random 2-px shifts and horizontal flips")
    l1: L1Config = Field(default_factory=L1Config)


class DataConfig(_Section):
    """Where the raw data is and how to read it (steps/sources/ has one module per source)."""

    source: Literal[tuple(SOURCES)] = Field(default="idx", description="which reader: " + " | ".join(SOURCES))
    path: str = Field(min_length=1, description="the source's folder or file (data.raw_dir is the old name)")
    val_size: int = Field(ge=1, description="training rows held out for validation")
    val_split: Literal["stratified", "random"] = Field(
        default="stratified", description="stratified per class, or a plain seeded permutation (the pre-16 split)")
    image_size: int | None = Field(default=None, ge=1, description="image sources: resize to this square size")
    channels: Literal["grayscale", "rgb"] | None = Field(default=None, description="image sources: convert to this")
    label_column: str | None = Field(default=None, min_length=1, description="table: the label column")
    feature_columns: list[str] | None = Field(default=None, description="table: feature columns (null: all others)")
    class_names: list[str] | None = Field(default=None, description="idx/arrays: names of labels 0..K-1")
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="held out as test when a source has none")
    train_limit: int | None = Field(default=None, ge=1, description="use only this many training rows")
    test_limit: int | None = Field(default=None, ge=1, description="use only this many test rows")

    @model_validator(mode="before")
    @classmethod
    def _raw_dir_is_path(cls, raw: Any) -> Any:
        """`raw_dir` (the key before data sources existed) is read as `path`; when both are given, raw_dir
        wins, so old overrides (-S data.raw_dir=...) keep working. DVC's dependency template reads
        data.path from params.yaml itself, so new projects should write path."""
        if isinstance(raw, dict) and "raw_dir" in raw:
            raw = {**raw, "path": raw["raw_dir"]}
            del raw["raw_dir"]
        return raw

    @model_validator(mode="after")
    def _table_needs_label(self) -> DataConfig:
        if self.source == "table" and self.label_column is None:
            raise ValueError("the table source needs data.label_column (the column holding the labels)")
        return self


class TeacherTrainConfig(TrainConfig):
    epochs: int = Field(ge=0, description="0 keeps teacher.init as it is (only with init)")


class TeacherInit(_Section):
    """A trained model to start from: a registered version or a safetensors checkpoint (its .json beside it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # "from" is a keyword
    source: str = Field(alias="from", min_length=1,
                        description='"models:/NAME@alias", "models:/NAME/VERSION" or a path to a .safetensors file')

    @field_validator("source")
    @classmethod
    def _known_form(cls, value: str) -> str:
        # A models:/ URI is parsed where it is resolved (tracking.ModelRef, the one parser of them).
        if not value.startswith("models:/") and not value.endswith(".safetensors"):
            raise ValueError(f"teacher.init.from must be a models:/ URI or a .safetensors path, got {value!r}")
        return value


class TeacherConfig(_Section):
    arch: ArchConfig
    train: TeacherTrainConfig
    init: TeacherInit | None = Field(default=None, description="start from this trained model instead of scratch")

    @model_validator(mode="after")
    def _zero_epochs_need_init(self) -> TeacherConfig:
        if self.train.epochs == 0 and self.init is None:
            raise ValueError("teacher.train.epochs: 0 needs teacher.init (a trained model to keep as it is)")
        return self


class TransformerPruneConfig(_Section):
    """prune.method transformer (a vit teacher): final fractions removed, reached over the rounds by the schedule."""

    heads: float = Field(default=0.0, ge=0, lt=1, description="fraction of attention heads (per block, or global)")
    mlp: float = Field(default=0.0, ge=0, lt=1, description="fraction of every block's MLP hidden width")
    embedding: float = Field(default=0.0, ge=0, lt=1, description="fraction of the residual (embedding) width")
    depth: float = Field(default=0.0, ge=0, lt=1, description="fraction of whole blocks, least important first")
    importance: Literal[tuple(choices.TRANSFORMER_IMPORTANCES)] = Field(
        default="l1", description="head / neuron / channel ranking")
    global_heads: bool = Field(default=False, description="rank heads over all blocks (blocks end up different)")
    depth_metric: Literal[tuple(choices.BLOCK_METRICS)] = Field(
        default="logit_kl", description="how a block's importance is measured when it is skipped")


class PruneConfig(_Section):
    method: Literal["magnitude", "structured", "transformer"] = Field(
        default="magnitude", description="magnitude: zero single weights; structured: remove whole channels/neurons; "
        "transformer: remove heads, MLP width, embedding width and blocks of a vit (prune.transformer)")
    scope: Literal["global", "layer"] = Field(default="global", description="one ranking for all layers, or per layer")
    importance: Literal[tuple(choices.IMPORTANCES)] = Field(
        default="l1", description="channel ranking for structured pruning")
    schedule: Literal[tuple(choices.SCHEDULES)] = "cubic"
    target_sparsity: float = Field(gt=0, lt=1, description="fraction of weights (magnitude) or channels (structured)")
    rounds: int = Field(ge=1)
    round_to: int = Field(default=1, ge=1, description="structured: channel counts kept as multiples of this")
    finetune: TrainConfig
    transformer: TransformerPruneConfig = Field(default_factory=TransformerPruneConfig)

    @model_validator(mode="after")
    def _transformer_amounts(self) -> PruneConfig:
        t = self.transformer
        if self.method == "transformer" and not any((t.heads, t.mlp, t.embedding, t.depth)):
            raise ValueError("prune.method transformer needs a fraction > 0 in prune.transformer "
                             "(heads, mlp, embedding or depth)")
        return self


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


class TransformerLossConfig(_Section):
    """A vit distillation term: its weight and which student block learns from which teacher block."""

    weight: float = Field(default=0.0, ge=0)
    layer_map: Literal[tuple(choices.LAYER_MAPS)] = Field(
        default="uniform", description="uniform: student block i <- teacher block ceil((i+1) Lt/Ls)-1 (TinyBERT); "
        "last: the last blocks only (MiniLM)")


class DistillConfig(_Section):
    teacher: Literal["pruned", "teacher"] = Field(
        default="pruned", description="pruned: prune-then-distill; teacher: distill from the unpruned teacher")
    student: ArchConfig
    temperature: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1, description="weight of the soft-target term; 0 trains on labels alone")
    hints: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="FitNets hint losses")
    attention: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="attention transfer")
    attention_maps: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="MiniLM: KL of vit attention distributions")
    hidden_states: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="TinyBERT: MSE of hidden states (pooled features "
        "when the teacher is not a vit), through a learned projection")
    train: TrainConfig

    @model_validator(mode="after")
    def _vit_losses(self) -> DistillConfig:
        if self.student.name != "vit" and (self.attention_maps.weight > 0 or self.hidden_states.weight > 0):
            raise ValueError(f"distill.attention_maps and distill.hidden_states need a vit student "
                             f"(distill.student.name is {self.student.name!r})")
        return self


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
    latency_repeats: int = Field(ge=1, description="timed calls per model and batch; >= 72 puts a 95% interval "
                                                   "on p95 (fewer: the latency gate falls back on the slowest call)")


class PromoteConfig(_Section):
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    min_accuracy: float = Field(ge=0, le=1)
    max_accuracy_drop: float = Field(ge=0, le=1, description="vs the teacher, in accuracy points/100")
    max_param_ratio: float = Field(gt=0, le=1, description="student params / teacher params")
    max_size_ratio: float | None = Field(default=None, gt=0, le=1,
                                         description="student file bytes / teacher file bytes; null: no gate")
    max_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="the upper end of the student's p95 latency interval (metrics/report.json) "
                                        "must lie within this; null: no gate")
    significance: float = Field(default=0.05, gt=0, lt=0.5, description="the challenger takes @champion as better "
                                "only at one-sided McNemar p below this and a bootstrap interval above 0")
    non_inferiority_pt: float | None = Field(
        default=None, ge=0, le=100, description="or when its accuracy is not worse than the champion's by more than "
                                                "this (pt, the interval's low end) and it is smaller or faster; null: never")
    max_class_drop_pt: float | None = Field(
        default=None, gt=0, le=100, description="no class's test recall may fall by more than this (pt) against the "
                                                "champion or the teacher; null: no gate")
    bootstrap_resamples: int = Field(default=2000, ge=1000, description="paired bootstrap of the accuracy difference")
    lock_timeout_s: float = Field(default=600, gt=0, description="how long a promotion waits for a concurrent one")


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
                ("day-of-week", 0, 7))


def _cron_part_ok(part: str, low: int, high: int) -> bool:
    match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
    if match is None:
        return False
    numbers = [int(g) for g in match.groups()[1:3] if g is not None]
    step = match.group(4)
    return all(low <= n <= high for n in numbers) and (step is None or int(step) >= 1)


class ScheduleConfig(_Section):
    """When the deployment served by `shrinkflow serve` (and prefect.yaml) runs the pipeline."""

    cron: str = Field(default="0 3 * * *", description="five-field cron expression")
    timezone: str = Field(default="UTC", min_length=1, description="IANA name; cron times are read in it")
    deployment: str = Field(default="scheduled", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Checked here without importing Prefect's croniter (1 s of imports on every params load);
        # `shrinkflow serve` hands the string to Prefect's CronSchedule, which checks it again.
        fields = value.split()
        if len(fields) != 5:
            raise ValueError("expected five fields: minute hour day-of-month month day-of-week")
        for field, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
            for part in field.split(","):
                if not _cron_part_ok(part, low, high):
                    raise ValueError(f"{name} field {field!r}: expected *, N, N-M or */K with N, M in {low}..{high}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return value


class RunConfig(_Section):
    """The project run lock (steps/core/runlock.py): one run per checkout at a time."""

    lock_timeout_s: float = Field(default=60, ge=0, description="how long a run waits for the one holding the "
                                  "project lock before it refuses (exit 75: retry later)")


class TrackingConfig(_Section):
    experiment: str = Field(min_length=1)


SWEEPABLE_SECTIONS = ("prune", "distill")
"""What a sweep may vary: the sections of the stages each member runs. Data and teacher are shared by
all members (run once), and evaluation measures every member side by side with one setting."""


class SweepConfig(_Section):
    """A grid of param values; `shrinkflow sweep` trains one member per combination."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="param path -> values, e.g. {prune.target_sparsity: [0.5, 0.9]}")
    scheduler_address: str | None = Field(
        default=None, min_length=1, description="an existing Dask scheduler (tcp://host:8786); None: a LocalCluster")
    workers: int | None = Field(default=None, ge=1, description="LocalCluster workers; None: CPU cores // threads")


class StorageConfig(_Section):
    """Pushing to the DVC remote: retried on connection errors only, with exponential back-off."""

    push_retries: int = Field(default=2, ge=0, le=10, description="retries after the first push attempt")
    retry_backoff_s: float = Field(default=1.0, ge=0, le=60, description="first retry delay; doubles each retry")


PROFILES = ("local", "services", "production")
"""Where the pipeline's state lives (steps/profiles.py says what each one needs)."""


class Params(_Section):
    profile: Literal[PROFILES] = Field(default="local", description="overridden by SHRINKFLOW_PROFILE and --profile")
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(ge=1, description="torch CPU threads for training and latency")
    data: DataConfig
    teacher: TeacherConfig
    prune: PruneConfig
    distill: DistillConfig
    export: ExportConfig
    quantize: QuantizeConfig
    evaluate: EvaluateConfig
    promote: PromoteConfig
    tracking: TrackingConfig
    sweep: SweepConfig
    schedule: ScheduleConfig
    storage: StorageConfig
    run: RunConfig
    target: TargetConfig = Field(description="the budget: when a limit is set, the prune stage searches for the model")

    def section_hash(self, *keys: str) -> str:
        """sha256 of the named top-level sections (all when none), for cache keys and tags."""
        dumped = self.model_dump(mode="json")
        chosen = {k: dumped[k] for k in keys} if keys else dumped
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()
