"""The pipeline's DAG, declared once.

Both runners read this: the Prefect flow (flows/compress.py) runs the stages in this order, and
dvc.yaml is generated from it and params.yaml (`shrinkflow dvc-yaml`; `shrinkflow run` and `repro`
regenerate it when it differs). A stage declares the files it reads and writes, and where params
choose its plug-ins; its code is derived: what `steps.<name>` imports (steps/core/imports.py) and the
modules those choices select (steps/config/selected.py), with their imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from steps.config.selected import selected_modules
from steps.core import imports
from steps.core.layout import (
    DATA_DIR,
    INT8_DIR,
    PLOTS_DIR,
    PROMOTION,
    REPORT,
    metrics_path,
    model_files,
    onnx_path,
)
from steps.core.names import ModelRole

if TYPE_CHECKING:
    from steps.config import Params


def _resolve(text: str, params: dict) -> str:
    def lookup(match: re.Match) -> str:
        node = params
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", lookup, text)


@dataclass(frozen=True)
class Stage:
    """One step: the module `steps.<name>`, the files it reads (besides its code) and writes, and `plugins`:
    the params paths whose choices by name (`choice(REGISTRY)` fields, e.g. teacher.arch.name) select code
    it runs: a reader, a model family, a loss term, a criterion."""

    name: str
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    model: ModelRole | None = None
    """The model the stage saves, when its checkpoint's files (its `outs`) depend on the family params choose:
    a .safetensors file and its .json spec, or a folder for a family that saves one (hf)."""

    @property
    def module(self) -> str:
        return f"steps.{self.name}"

    @property
    def command(self) -> str:
        return f"python -m {self.module}"

    def outputs(self, params: Params) -> tuple[str, ...]:
        """`outs` under `params`: a model's checkpoint is a folder when its family saves one (hf)."""
        if self.model is None:
            return self.outs
        saved = model_files(self.model, directory=_arch_of(params, self.model).saves_directory)
        return (*saved, *(out for out in self.outs if out not in model_files(self.model)))

    def code(self, params: Params) -> tuple[str, ...]:
        """The source files the stage runs under `params`: its module (a stage folder's `__main__` too, which
        `python -m` runs), the modules its params choose at `plugins` (those the params leave unused aside,
        e.g. prune.method under a budget), and everything those import from `steps`."""
        entry = [m for m in (self.module, f"{self.module}.__main__") if imports.module_file(m) is not None]
        chosen = selected_modules(params, self.plugins)
        return tuple(sorted(imports.relative_file(m) for m in imports.closure(*entry, *chosen)))

    def inputs_for(self, params: Params) -> tuple[str, ...]:
        """`inputs` under `params`: each model's checkpoint as its family saves it (a folder for hf), and the
        files outside the project that params name: a saved tokenizer the data stage reads, the folder a
        teacher is loaded from (a change in either must rerun the stage that reads it)."""
        resolved: list[str] = []
        for dep in self.inputs:
            role = _model_role_of(dep)
            files = (dep,) if role is None else model_files(role, directory=_arch_of(params, role).saves_directory)
            resolved.extend(f for f in files if f not in resolved)
        return (*resolved, *_named_files(params, self.name))

    def deps(self, params: Params) -> tuple[str, ...]:
        return (*self.code(params), *self.inputs_for(params))

    def resolved_deps(self, params: Params) -> tuple[str, ...]:
        """Deps with `${section.key}` templates filled from params, as DVC resolves them."""
        dumped = params.model_dump(mode="json")
        return tuple(_resolve(dep, dumped) for dep in self.deps(params))


def _model_role_of(dep: str) -> ModelRole | None:
    """The model whose checkpoint `dep` is one of the default (.safetensors + .json) files of, if any."""
    return next((role for role in ModelRole if dep in model_files(role)), None)


def _named_files(params: Params, stage_name: str) -> tuple[str, ...]:
    """Files params name that the stage reads besides the pipeline's own: data.tokenizer.path (data), the
    teacher's and the student's arch files (an hf arch.path: teacher, distill)."""
    if stage_name == "data":
        tokenizer = params.data.tokenizer
        return (tokenizer.path,) if tokenizer is not None and tokenizer.path else ()
    if stage_name == "teacher":
        return params.teacher.arch.files
    if stage_name == "distill" and params.student_arch is params.distill.student:  # not the pruned model
        return params.distill.student.files
    return ()


def _arch_of(params: Params, role: ModelRole):
    """The family config of the model `role` names: the student's own (Params.student_arch: the teacher's when
    the student is the pruned model), else the teacher's (the pruned model is the teacher's family)."""
    return params.student_arch if role is ModelRole.STUDENT else params.teacher.arch


RAW_DIR = "${data.path}"
"""The raw input of whichever data source (a folder or a file), wherever params.yaml points; DVC resolves
the same template itself, so a new file in the folder or a new table changes the data stage's deps."""
_ALL_MODELS = tuple(f for role in ModelRole for f in model_files(role))
_LOADS_ALL_MODELS = ("teacher.arch", "distill.student")
"""The families of the teacher, the pruned model (the teacher's) and the student (with a budget, when
distill.student is unused, the searched pruned model: the teacher's family)."""

STAGES: tuple[Stage, ...] = (
    Stage("data", inputs=(RAW_DIR,), params=("seed", "data"), outs=(DATA_DIR,), plugins=("data",)),
    Stage("teacher", inputs=(DATA_DIR,), params=("seed", "device", "threads", "resources", "teacher"),
          outs=model_files(ModelRole.TEACHER), metrics=(metrics_path("teacher"),), plugins=("teacher", "resources"),
          model=ModelRole.TEACHER),
    # it loads the teacher; with a budget (target), prune searches the widths and precision instead (one process);
    # resources: the rounds' fine-tuning runs on its processes and in its precision
    Stage("prune", inputs=(DATA_DIR, *model_files(ModelRole.TEACHER)),
          params=("seed", "device", "threads", "resources", "prune", "target", "export"),
          outs=model_files(ModelRole.PRUNED), metrics=(metrics_path("prune"),),
          plugins=("teacher.arch", "prune"), model=ModelRole.PRUNED),
    # distill.teacher chooses which one teaches; with a budget, the teacher distills into the searched model
    Stage("distill", inputs=(DATA_DIR, *model_files(ModelRole.TEACHER), *model_files(ModelRole.PRUNED)),
          params=("seed", "device", "threads", "resources", "distill", "target"), outs=model_files(ModelRole.STUDENT),
          metrics=(metrics_path("distill"),),
          plugins=("teacher.arch", "distill", "resources"), model=ModelRole.STUDENT),
    Stage("export", inputs=(DATA_DIR, *_ALL_MODELS), params=("threads", "export"),
          outs=tuple(onnx_path(role) for role in ModelRole), metrics=(metrics_path("export"),),
          plugins=_LOADS_ALL_MODELS),
    # metrics/prune.json: the precision a budget search chose to deploy
    Stage("quantize", inputs=(DATA_DIR, onnx_path(ModelRole.STUDENT), metrics_path("prune")),
          params=("seed", "threads", "quantize", "target"), outs=(INT8_DIR,), metrics=(metrics_path("quantize"),)),
    # metrics/prune.json: how the budget search's verification read the teacher's file (the machine's drift since)
    Stage("evaluate", inputs=(DATA_DIR, *_ALL_MODELS, *(onnx_path(role) for role in ModelRole), INT8_DIR,
                              metrics_path("quantize"), metrics_path("prune")),
          params=("device", "threads", "evaluate", "target"), metrics=(REPORT,), plots=(f"{PLOTS_DIR}/pareto.png",),
          plugins=_LOADS_ALL_MODELS),
    # the deployable ONNX files are logged with the registered version; with a budget, the teacher's ONNX file
    # too (the reference its latency was timed beside, for the audit)
    Stage("promote", inputs=(DATA_DIR, REPORT, *model_files(ModelRole.STUDENT), onnx_path(ModelRole.STUDENT),
                             INT8_DIR, metrics_path("quantize"), onnx_path(ModelRole.TEACHER)),
          params=("promote", "tracking", "target"), metrics=(PROMOTION,), plugins=_LOADS_ALL_MODELS),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
LINEAGE_SECTIONS = tuple(sorted({section for st in STAGES for section in st.params}))
"""The params.yaml sections that make a model (every stage's); the schedule, for one, does not."""


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}")


def dvc_yaml(params: Params) -> dict:
    """dvc.yaml's content for a project's params, generated from STAGES (`shrinkflow dvc-yaml` writes it)."""
    stages = {}
    for s in STAGES:
        entry: dict = {"cmd": s.command, "deps": list(s.deps(params)), "params": list(s.params)}
        if s.outputs(params):
            entry["outs"] = list(s.outputs(params))
        if s.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in s.metrics]
        if s.plots:
            entry["plots"] = [{p: {"cache": False}} for p in s.plots]
        stages[s.name] = entry
    return {"stages": stages}
