"""params.yaml: its schema, loading with clear errors, `-S` overrides and sweep grids.

Callers use this package's names (`config.load`, `config.Params`, `config.ConfigError`, ...); the
modules behind them each do one job.
"""

from steps.config.grid import SweepMember, parse_grid, sweep_members
from steps.config.load import PARAMS_FILE, ConfigError, format_errors, load, read_raw, validate
from steps.config.overrides import apply_overrides
from steps.config.schema import (
    PROFILES,
    SWEEPABLE_SECTIONS,
    ArchConfig,
    BudgetConfig,
    DataConfig,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    FeatureLossConfig,
    L1Config,
    LayerPair,
    Params,
    PromoteConfig,
    PruneConfig,
    QuantizeConfig,
    ResourcesConfig,
    RunConfig,
    ScheduleConfig,
    StorageConfig,
    SweepConfig,
    TeacherConfig,
    TrackingConfig,
    TrainConfig,
    TransformerLossConfig,
    TransformerPruneConfig,
)

__all__ = [
    "PARAMS_FILE", "PROFILES", "SWEEPABLE_SECTIONS", "ArchConfig", "BudgetConfig", "ConfigError", "DataConfig", "DistillConfig",
    "EvaluateConfig", "ExportConfig", "FeatureLossConfig", "L1Config", "LayerPair", "Params", "PromoteConfig",
    "PruneConfig", "QuantizeConfig", "ResourcesConfig", "RunConfig", "ScheduleConfig", "StorageConfig", "SweepConfig", "SweepMember",
    "TeacherConfig", "TrackingConfig", "TrainConfig", "TransformerLossConfig", "TransformerPruneConfig", "apply_overrides", "format_errors", "load", "parse_grid",
    "read_raw", "sweep_members", "validate",
]
