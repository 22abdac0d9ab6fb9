"""The schema of params.yaml: `Params`, one pydantic model per section (each in its module here).

Every value the pipeline uses comes from here; nothing in code overrides it. Choices by name
(architecture, schedule, importance, ...) take their valid names from the registries in
`steps.compression.choices` through `base.choice`, so a new entry there is a valid value here, with no second list.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from steps.config import pairing
from steps.config.base import Section as _Section
from steps.config.budget import BudgetConfig
from steps.config.data import DataConfig
from steps.config.deploy import EvaluateConfig, ExportConfig, QuantizeConfig
from steps.config.distill import DistillConfig, FeatureLossConfig, LayerPair, TransformerLossConfig
from steps.config.models import ArchConfig, TeacherConfig, TeacherInit, TeacherTrainConfig
from steps.config.operations import (
    SWEEPABLE_SECTIONS,
    RunConfig,
    ScheduleConfig,
    StorageConfig,
    SweepConfig,
    TrackingConfig,
)
from steps.config.promote import PromoteConfig
from steps.config.prune import PruneConfig, TransformerPruneConfig
from steps.config.resources import ResourcesConfig, check_device, check_strategy
from steps.config.training import L1Config, TrainConfig

__all__ = [
    "PROFILES", "SWEEPABLE_SECTIONS", "ArchConfig", "BudgetConfig", "DataConfig", "DistillConfig", "EvaluateConfig", "ExportConfig",
    "FeatureLossConfig", "L1Config", "LayerPair", "Params", "PromoteConfig", "PruneConfig", "QuantizeConfig", "ResourcesConfig", "RunConfig",
    "ScheduleConfig", "StorageConfig", "SweepConfig", "TeacherConfig", "TeacherInit", "TeacherTrainConfig",
    "TrackingConfig", "TrainConfig", "TransformerLossConfig", "TransformerPruneConfig",
]

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
    target: BudgetConfig = Field(description="the budget: when a limit is set, the prune stage searches for the model")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig,
                                       description="processes and precision of the training stages")

    @model_validator(mode="before")
    @classmethod
    def _tokenizer_of_the_teacher(cls, raw: Any) -> Any:
        """Text data without data.tokenizer take the tokenizer of the teacher's save_pretrained folder
        (teacher.arch.path), as the model was trained on it; the data stage refuses that folder, naming it,
        when it holds no tokenizer.json."""
        if not isinstance(raw, dict):
            return raw
        data, teacher = raw.get("data"), raw.get("teacher")
        arch = teacher.get("arch") if isinstance(teacher, dict) else None
        if (isinstance(data, dict) and data.get("source") == "text" and data.get("tokenizer") is None
                and isinstance(arch, dict) and arch.get("name") == "hf" and arch.get("path")):
            return {**raw, "data": {**data, "tokenizer": {"path": arch["path"]}}}
        return raw

    @field_validator("resources")
    @classmethod
    def _runs_on_the_device(cls, resources: ResourcesConfig, info: ValidationInfo) -> ResourcesConfig:
        """fp16 and nccl on device: cpu, refused before any work (device auto is checked when it resolves); what
        fsdp cannot train (the teacher's L1 penalty: a run that trains the teacher)."""
        device, teacher = info.data.get("device"), info.data.get("teacher")
        if device is not None:
            check_device(resources, device)
        if teacher is not None and (info.context or {}).get("stage") in (None, "teacher"):
            check_strategy(resources, teacher.train.l1.coefficient)
        return resources

    @field_validator("teacher")
    @classmethod
    def _reads_the_data(cls, teacher: TeacherConfig, info: ValidationInfo) -> TeacherConfig:
        """The teacher's family reads what the data source gives (text for hf), and the stage runs on it
        (pairing.py); a whole run or a stage alone (`config.load(root, stage=...)`) is refused before any work."""
        data = info.data.get("data")  # absent when data itself is invalid: that error is reported
        if data is not None:
            pairing.check_teacher(data.source, teacher.arch, (info.context or {}).get("stage"))
        return teacher

    @field_validator("distill")
    @classmethod
    def _student_family_runs(cls, distill: DistillConfig, info: ValidationInfo) -> DistillConfig:
        """The student's family reads the data (pairing.py); a pruned student (the teacher's family) has the
        blocks its terms read."""
        data, teacher = info.data.get("data"), info.data.get("teacher")
        if data is not None:
            pairing.check_student(data.source, distill.student, (info.context or {}).get("stage"))
        if teacher is not None and distill.student_is_pruned:
            distill.check_block_terms(teacher.arch.name, "teacher.arch.name, the pruned student's family,")
        return distill

    def unused(self) -> tuple[str, ...]:
        """A budget replaces the prune knobs (the stage searches widths instead) and the student (the searched,
        pruned model is distilled). prune.transformer is read by prune.method transformer, and under a budget by
        an hf teacher's search (its criteria rank heads, FFN neurons and layers): here, where both are known."""
        transformer = (self.teacher.arch.budget_ranks_by_transformer if self.target.active
                       else self.prune.method == "transformer")
        knobs = () if transformer else ("prune.transformer",)
        if not self.target.active:
            return knobs
        return ("prune.method", "prune.schedule", *knobs, "distill.student")

    @property
    def student_arch(self) -> ArchConfig:
        """The family config of the model the distill stage trains: distill.student, or teacher.arch when the
        student is the pruned model (`distill.student: {name: pruned}`, or the model a budget searched)."""
        if self.target.active or self.distill.student_is_pruned:
            return self.teacher.arch
        return self.distill.student

    def section_hash(self, *keys: str) -> str:
        """sha256 of the named top-level sections (all when none), for cache keys and tags."""
        dumped = self.model_dump(mode="json")
        chosen = {k: dumped[k] for k in keys} if keys else dumped
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()
