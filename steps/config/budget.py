"""The budget (params.yaml section `target:`, the name users' files keep): the limits the deployable model must
meet, and how the search for it runs.

With any budget set, the prune stage stops using the prune knobs (method, target_sparsity, schedule,
rounds) and searches per-layer widths and the deployable precision for the most accurate model inside
the budget (steps/prune/budget_search.py; on an hf teacher, the uniform shapes its config can describe:
steps/prune/hf_search.py); distill then distills the teacher into that model, quantize builds
and deploys the precision it chose, evaluate re-measures the deployable on the budget's terms and
promote gates on it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from steps.config.base import Section

BUDGET_KEYS = ("latency_p95_ms", "speedup", "size_kb", "parameters", "macs")
"""The budget's limits; a model meets the budget when it is within every one that is set."""


class SearchConfig(Section):
    widths: list[float] = Field(
        default=[0.25, 0.5, 0.75], min_length=1,
        description="fractions of each layer's channels the search may keep (each in (0, 1)); the sensitivity "
                    "table cuts each layer to each of them. On an hf teacher: the fractions of its heads and of its "
                    "FFN width that the uniform shapes keep")
    precisions: list[Literal["fp32", "dynamic", "static"]] = Field(
        default=["fp32", "dynamic"], min_length=1, description="deployable forms searched: fp32 ONNX, int8 ones")
    candidates: int = Field(default=2, ge=1, description="best predicted models fine-tuned and verified")
    sensitivity_images: int | None = Field(
        default=2000, ge=1, description="validation images the sensitivity table scores on; null = all")
    search_repeats: int = Field(
        default=80, ge=72, description="timed calls per measured width setting while searching (>= 72: an "
                                       "interval on p95)")
    search_seconds: float = Field(
        default=0.3, ge=0, description="timed calls go on (past search_repeats) until they have lasted this long: "
        "at batch 1, 80 calls take 10 ms and one hiccup of the machine decides their p95")
    verify_repeats: int = Field(default=80, ge=72, description="timed calls per file and window when verifying a "
                                                              "fine-tuned candidate (and in evaluate)")
    verify_seconds: float = Field(
        default=1.5, ge=0, description="the same when verifying (and when evaluate re-measures the deployable), "
                                       "per timing window")
    verify_windows: int = Field(
        default=5, ge=2, description="timing windows when verifying and when evaluate re-measures the deployable: "
        "the interval a latency limit is judged by spans how far they disagree (the machine's drift)")
    warmup: int = Field(default=20, ge=0, description="untimed calls first: ONNX Runtime allocates on the first runs")
    margin: float = Field(
        default=0.1, ge=0, lt=1, description="the search aims at each limit less this fraction, so that its "
        "candidates still fit when verified against the limit itself and when evaluate re-measures the deployable "
        "(batch-1 p95 moved 15% between two runs here)")

    @field_validator("widths")
    @classmethod
    def _fractions(cls, widths: list[float]) -> list[float]:
        bad = [w for w in widths if not 0 < w < 1]
        if bad:
            raise ValueError(f"every width must be a fraction in (0, 1), got {bad}")
        return sorted(set(widths), reverse=True)


class BudgetConfig(Section):
    """params.yaml `target:`; the code calls it the budget (steps/core/budget.py measures against it)."""

    latency_p95_ms: float | None = Field(
        default=None, gt=0, description="p95 latency of the deployable ONNX file on ONNX Runtime (params.threads) "
                                        "at batch_size; the upper end of its 95% interval must be within it")
    speedup: float | None = Field(
        default=None, gt=0, description="at least this many times faster than the unpruned teacher's ONNX file "
        "(ratio of medians at batch_size, timed side by side in the same turns, so the machine's drift cannot "
        "flip it); the lower end of its 95% interval must reach it")
    batch_size: int = Field(default=1, ge=1, description="the batch the latency budget is for")
    size_kb: float | None = Field(default=None, gt=0, description="deployable ONNX file size, KiB")
    parameters: int | None = Field(default=None, ge=1, description="parameter count")
    macs: int | None = Field(default=None, ge=1, description="multiply-accumulates of one sample")
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="validation accuracy floor a fine-tuned candidate must reach")
    search: SearchConfig = Field(default_factory=SearchConfig)

    @property
    def active(self) -> bool:
        """Whether any budget is set: then the prune stage searches instead of following the prune knobs."""
        return any(getattr(self, key) is not None for key in BUDGET_KEYS)

    def limits(self) -> dict[str, float]:
        """{budget key: limit} of the limits that are set."""
        return {key: getattr(self, key) for key in BUDGET_KEYS if getattr(self, key) is not None}
