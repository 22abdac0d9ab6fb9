"""The contracts between stages: what each returns, written as its JSON file at the edge and read back typed.

They live here, not in the stage modules, because a stage that reads another's output must not
import that stage (its code would become a dependency of the reader).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Self

from steps.core.files import write_json


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageResult:
    """Base of every `<Stage>Result`: plain JSON-able fields, one file per stage, built by keyword (kw_only: a
    positional call would silently swap two fields of the same type)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> Self:
        """The result a stage wrote to `path`; ValueError naming the file when it is not this stage's shape."""
        raw = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not required <= set(raw):
            raise ValueError(f"{path}: not a {cls.__name__} (missing {', '.join(sorted(required - set(raw)))}); "
                             "rerun the stage that writes it")
        return cls(**{k: v for k, v in raw.items() if k in names})


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a.b.c": leaf}: nested dicts as the dotted keys MLflow params and metrics use."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, path) if isinstance(value, dict) else {path: value})
    return out


@dataclass(frozen=True, kw_only=True)
class DataResult(StageResult):
    """The manifest: what every later stage reads about the data (written as manifest.json)."""

    dataset: str
    source: str
    """The `data.source` reader that read the raw data."""
    kind: str
    """"image" (uint8 (N, C, H, W) in the splits), "features" (float32 (N, D)) or "text" (int32 input_ids and
    uint8 attention_mask, (N, max_length))."""
    classes: list[str]
    input_shape: list[int]
    """One sample's shape: [C, H, W], [D] or [max_length]."""
    feature_names: list[str]
    seed: int
    files: dict[str, dict]
    raw: dict[str, str]
    """{raw file relative to data.path: sha256}."""
    raw_sha256: str
    """One sha256 over every raw file's name and sha256."""
    normalization: dict[str, list[float]]
    """{"mean": [...], "std": [...]} of the training split: per channel (images) or per feature (tables); {} for
    text."""
    resize: int | None = None
    """Images: the square size `data.image_size` resized every image to (the served model resizes the same way);
    None: images were kept at their size, and the served model refuses other sizes."""
    max_length: int | None = None
    """Text: every text's tokens, truncated on the right and padded to this length (special tokens included)."""
    truncated: dict[str, int] | None = None
    """Text: {split: how many of its texts lost tokens to max_length}."""
    tokenizer: dict | None = None
    """Text: {"file": "tokenizer.json" (beside the splits), "sha256", "vocab_size", "special_tokens": {role:
    {"token", "id"}} for pad/cls/sep/unk/mask where present, "trained": {"kind", "vocab_size"} asked for, or
    None when loaded from data.tokenizer.path}."""
    text_column: str | None = None
    """Text: the column a caller's table names its texts in (data.text_column; "text" for class folders): the
    served model's input (steps/serving/contract.py)."""

    task: str | None = None
    """Language-model data: "causal_lm" (steps/sources/blocks.py); None (left out): labelled samples (classify)."""
    block_size: int | None = None
    """causal_lm: tokens per block; each split's input_ids are (blocks, block_size)."""
    separator: dict | None = None
    """causal_lm: {"token", "id"} ending every document in the token stream."""
    documents: dict[str, int] | None = None
    """causal_lm: {split: its documents}."""
    tokens: dict[str, int] | None = None
    """causal_lm: {split: its token stream's length, one separator per document included}."""
    bytes: dict[str, int] | None = None
    """causal_lm: {split: its documents' UTF-8 bytes, as written} (bits per byte divides by them)."""
    dropped: dict[str, int] | None = None
    """causal_lm: {split: the tokens of its last partial block, which no block holds}."""

    TEXT_ONLY = ("max_length", "truncated", "tokenizer", "text_column")
    LM_ONLY = ("task", "block_size", "separator", "documents", "tokens", "bytes", "dropped")

    def to_dict(self) -> dict:
        """The manifest; data that are not text leave out the text fields, and labelled samples the language-model
        fields, so their manifests (and digests) stay what they were before text and language models existed."""
        out = super().to_dict()
        return {k: v for k, v in out.items() if k not in self.TEXT_ONLY + self.LM_ONLY or v is not None}


@dataclass(frozen=True, kw_only=True)
class TeacherResult(StageResult):
    val_accuracy: float
    parameters: int
    mlflow_run_id: str
    init_uri: str = ""
    """Where the starting weights came from (teacher.init.from); empty when trained from scratch."""
    init_sha256: str = ""
    """sha256 of the starting safetensors file."""
    epochs: int = -1
    """teacher.train.epochs that ran on top (0: the init model as it is); -1 in results from before init."""


@dataclass(frozen=True, kw_only=True)
class PruneResult(StageResult):
    method: str
    sparsity: float
    parameters: int
    val_accuracy: float
    layer_sparsity: dict[str, float]
    curve: list[dict]
    """One point per round: round, target, measured sparsity, parameters, val_accuracy."""
    mlflow_run_id: str
    search: dict | None = None
    """With a budget (params `target:`): the search's budget, sensitivity, frontier, candidates and choice."""

    @property
    def deploy_precision(self) -> str | None:
        """The deployable form the budget search chose (fp32 or an int8 method); None without a search."""
        return self.search["chosen"]["precision"] if self.search else None


@dataclass(frozen=True, kw_only=True)
class DistillResult(StageResult):
    teacher: str
    """Which model taught: the pruned one (prune-then-distill) or the unpruned teacher."""
    val_accuracy: float
    teacher_val_accuracy: float
    parameters: int
    mlflow_run_id: str


@dataclass(frozen=True, kw_only=True)
class ExportResult(StageResult):
    models: dict[str, dict]
    """{role: parity numbers, file_bytes, sha256} of each ONNX file."""
    opset: int
    exporter: str
    mlflow_run_id: str


@dataclass(frozen=True, kw_only=True)
class QuantizeResult(StageResult):
    variants: dict[str, dict]
    """{"fp32" | method: {file, accuracy, accuracy_drop, file_bytes, size_ratio, sha256}}, fp32 first."""
    deploy: str
    deployable: str
    """The project-relative path of the ONNX file registered as deployable."""
    eval_images: int
    calibration_images: int
    max_accuracy_drop: float
    mlflow_run_id: str


@dataclass(frozen=True, kw_only=True)
class EvaluateReport(StageResult):
    """metrics/report.json: every model measured side by side, and the student's deployable ONNX files."""

    models: dict[str, dict]
    threads: int
    latency_batch_size: int
    latency_backend: str
    test_images: int
    deploy: dict
    mlflow_run_id: str
    target: dict | None = None
    """With a budget: the deployable file re-measured on the budget's terms ({budget, measured, violations})."""
    latency_clocks: dict | None = None
    """What timed each backend (measurement.clocks): {"eager": perf_counter | cuda_events, "onnxruntime": the
    execution provider that ran}."""
    language: dict | None = None
    """causal_lm: the student against the teacher by a paired bootstrap over test documents, each model's summed
    log-likelihood per document (promote's paired gate reads them), and greedy generations from fixed prompts."""
