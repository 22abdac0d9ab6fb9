"""params.yaml `promote:`: the registered model's name and the gates a candidate must pass."""

from __future__ import annotations

from pydantic import Field

from steps.config.base import Section as _Section


class PromoteConfig(_Section):
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    replace_contract: bool = Field(
        default=False, description="register a candidate whose input contract (input kind and shape, feature names, "
        "class names) differs from the champion's, starting a new line on purpose; otherwise it is refused")
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
