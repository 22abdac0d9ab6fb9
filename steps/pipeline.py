"""The pipeline's DAG, declared once.

Both runners read this: the Prefect flow (flows/compress.py) runs the stages
in this order, and dvc.yaml is generated from it (`shrinkflow dvc-yaml`), with
a test asserting the committed dvc.yaml matches, so the two cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from steps.names import ModelRole

DATA_DIR = "data/processed"
MANIFEST = f"{DATA_DIR}/manifest.json"
MODELS_DIR = "models"
METRICS_DIR = "metrics"
PLOTS_DIR = "plots"
REPORT = f"{METRICS_DIR}/report.json"
PROMOTION = f"{METRICS_DIR}/promotion.json"


def model_path(role: ModelRole) -> str:
    """Weights of one model; its architecture spec sits beside it (.json)."""
    return f"{MODELS_DIR}/{role}.safetensors"


def spec_path(role: ModelRole) -> str:
    return f"{MODELS_DIR}/{role}.json"


def onnx_path(role: ModelRole) -> str:
    """The model exported to ONNX (fp32, dynamic batch axis)."""
    return f"{MODELS_DIR}/{role}.onnx"


INT8_DIR = f"{MODELS_DIR}/int8"
"""The quantize stage's output folder: one file per int8 method (empty when quantization is off)."""


def int8_path(role: ModelRole, method: str) -> str:
    return f"{INT8_DIR}/{role}.{method}.onnx"


def metrics_path(stage: str) -> str:
    return f"{METRICS_DIR}/{stage}.json"


def model_files(role: ModelRole) -> tuple[str, str]:
    return model_path(role), spec_path(role)


def _resolve(text: str, params: dict) -> str:
    def lookup(match: re.Match) -> str:
        node = params
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", lookup, text)


@dataclass(frozen=True)
class Stage:
    """One step: the module `steps.<name>` and the files it reads and writes."""

    name: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()

    def resolved_deps(self, params: dict) -> tuple[str, ...]:
        """Deps with `${section.key}` templates filled from params, as DVC resolves them."""
        return tuple(_resolve(dep, params) for dep in self.deps)

    @property
    def module(self) -> str:
        return f"steps.{self.name}"

    @property
    def command(self) -> str:
        return f"python -m {self.module}"


# The raw IDX folder, wherever params.yaml points; DVC resolves the same template itself.
RAW_DIR = "${data.raw_dir}"

# Source the stages share; a change there reruns every stage that uses it.
_COMPRESSION = "steps/compression"
_COMMON = ("steps/config.py", "steps/steputil.py", "steps/hashing.py")

STAGES: tuple[Stage, ...] = (
    Stage(
        name="data",
        deps=("steps/data.py", *_COMMON, RAW_DIR),
        params=("seed", "data"),
        outs=(DATA_DIR,),
    ),
    Stage(
        name="teacher",
        deps=("steps/teacher.py", _COMPRESSION, *_COMMON, "steps/data.py", DATA_DIR),
        params=("seed", "device", "threads", "teacher"),
        outs=model_files(ModelRole.TEACHER),
        metrics=(metrics_path("teacher"),),
    ),
    Stage(
        name="prune",
        deps=("steps/prune.py", _COMPRESSION, *_COMMON, "steps/data.py", DATA_DIR, *model_files(ModelRole.TEACHER)),
        params=("seed", "device", "threads", "prune"),
        outs=model_files(ModelRole.PRUNED),
        metrics=(metrics_path("prune"),),
    ),
    Stage(
        name="distill",
        deps=(
            "steps/distill.py",
            _COMPRESSION,
            *_COMMON,
            "steps/data.py",
            DATA_DIR,
            # distill.teacher chooses which one teaches
            *model_files(ModelRole.TEACHER),
            *model_files(ModelRole.PRUNED),
        ),
        params=("seed", "device", "threads", "distill"),
        outs=model_files(ModelRole.STUDENT),
        metrics=(metrics_path("distill"),),
    ),
    Stage(
        name="export",
        deps=("steps/export.py", _COMPRESSION, *_COMMON, "steps/data.py", DATA_DIR,
              *(f for role in ModelRole for f in model_files(role))),
        params=("threads", "export"),
        outs=tuple(onnx_path(role) for role in ModelRole),
        metrics=(metrics_path("export"),),
    ),
    Stage(
        name="quantize",
        deps=("steps/quantize.py", _COMPRESSION, *_COMMON, "steps/data.py", DATA_DIR, onnx_path(ModelRole.STUDENT)),
        params=("seed", "threads", "quantize"),
        outs=(INT8_DIR,),
        metrics=(metrics_path("quantize"),),
    ),
    Stage(
        name="evaluate",
        deps=(
            "steps/evaluate.py",
            "steps/report.py",
            "steps/quantize.py",
            _COMPRESSION,
            *_COMMON,
            "steps/data.py",
            DATA_DIR,
            *(f for role in ModelRole for f in model_files(role)),
            *(onnx_path(role) for role in ModelRole),
            INT8_DIR,
            metrics_path("quantize"),
        ),
        params=("threads", "evaluate"),
        metrics=(REPORT,),
        plots=(f"{PLOTS_DIR}/pareto.png",),
    ),
    Stage(
        name="promote",
        deps=("steps/promote.py", "steps/registry.py", "steps/tracking.py", "steps/lineage.py", "steps/storage.py",
              "steps/names.py",
              _COMPRESSION, *_COMMON, "steps/data.py", DATA_DIR, REPORT, *model_files(ModelRole.STUDENT),
              # the deployable ONNX files logged with the registered version
              "steps/quantize.py", onnx_path(ModelRole.STUDENT), INT8_DIR, metrics_path("quantize")),
        params=("promote", "tracking"),
        metrics=(PROMOTION,),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}")


def dvc_yaml() -> dict:
    """dvc.yaml's content, generated from STAGES (`shrinkflow dvc-yaml` writes it)."""
    stages = {}
    for s in STAGES:
        entry: dict = {"cmd": s.command, "deps": list(s.deps), "params": list(s.params)}
        if s.outs:
            entry["outs"] = list(s.outs)
        if s.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in s.metrics]
        if s.plots:
            entry["plots"] = [{p: {"cache": False}} for p in s.plots]
        stages[s.name] = entry
    return {"stages": stages}
