"""The current champion, read from the registry and re-scored beside the candidate on today's test split.

A champion's old score on old data proves nothing about today: both versions are scored through the
registry (what is served) on the same images, so the comparison is paired (steps/registry/comparison.py).
"""

from __future__ import annotations

import numpy as np

from steps import config, tracking
from steps.core.measurement import timed_on_cpu
from steps.core.names import Alias, Tag
from steps.promote.decision import Candidate, Incumbent
from steps.registry import comparison
from steps.registry.comparison import ScoredSplit

COST_METRICS = ("parameters", "file_bytes", "latency_p95_low_ms", "latency_p95_high_ms")
"""Logged in the promote run as candidate.<key>: what 'smaller or faster' reads of a later champion."""


def incumbent_now(candidate: Candidate, challenger: np.ndarray, test: ScoredSplit,
                  cfg: config.PromoteConfig) -> Incumbent | None:
    """The current champion scored through the registry on `test`, beside the candidate's served labels there
    (`challenger`); None if there is no champion."""
    current = tracking.alias_version(candidate.model_name, Alias.CHAMPION)
    if current is None:
        return None
    version = int(current.version)
    champion = comparison.served_labels(candidate.model_name, version, test)
    y, class_names = test.y, test.classes
    return Incumbent(version=version, metrics=champion_costs(current),
                     comparison=comparison.compare(y, champion, challenger, class_names, cfg),
                     class_drops=comparison.class_drops(y, champion, challenger, class_names, cfg))


def champion_costs(version) -> dict:
    """The champion's size and latency interval, as its promote run logged them ({} for older versions)."""
    run_id = dict(version.tags).get(Tag.PROMOTE_RUN)
    if not run_id:
        return {}
    logged = tracking.run_record(run_id).data.metrics
    return {key: logged[f"candidate.{key}"] for key in COST_METRICS if f"candidate.{key}" in logged}


def comparable_costs(metrics: dict, report: dict) -> dict:
    """The student's row of the report, less its latency when evaluate timed it on a GPU (report.json's
    `latency_clocks`): 'faster' compares latencies of promote runs, which must all be the CPU's."""
    clock = (report.get("latency_clocks") or {}).get(report.get("latency_backend", ""))
    if timed_on_cpu(clock):
        return metrics
    return {k: v for k, v in metrics.items() if not k.startswith("latency_p95_")}


def cost_metrics(candidate: Candidate) -> dict[str, float]:
    """What this promote run logs for a later challenger's 'smaller or faster' to compare with."""
    return {f"candidate.{k}": candidate.metrics[k] for k in COST_METRICS if candidate.metrics.get(k) is not None}
