"""steps/core/latency.py: deployables timed side by side in windows, and the verdicts a limit gets (issue 29)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from steps.compression import onnx_export
from steps.core.latency import INCONCLUSIVE, OVER, PASS, REFERENCE, Timing, drift, reading, time_files, verdict


@pytest.mark.parametrize(("low", "high", "at_least", "expected"), [
    (1.0, 1.5, False, PASS), (1.5, 2.5, False, INCONCLUSIVE), (2.5, 3.0, False, OVER),
    (2.5, 3.0, True, PASS), (1.5, 2.5, True, INCONCLUSIVE), (1.0, 1.5, True, OVER),
    (2.0, 2.0, False, PASS), (2.0, 2.0, True, PASS),
])
def test_a_limit_is_passed_or_missed_only_by_the_whole_interval(low, high, at_least, expected):
    assert verdict(low, high, 2.0, at_least) == expected


def fake_windows(levels: list[float], factor: float, n: int = 120) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return [list(level * factor * rng.gamma(60.0, 1 / 60.0, n)) for level in levels]


def test_a_reading_across_windows_carries_the_windows_the_speedup_and_the_machines_drift():
    levels = [1.0, 1.8, 1.0]  # the machine slows every file in the second window
    timed = {"model": fake_windows(levels, 2.0), REFERENCE: fake_windows(levels, 6.0)}
    read = reading(timed, "model", REFERENCE)
    assert read["windows"] == 3 and len(read["window_p95_ms"]) == 3
    assert read["latency_p95_low_ms"] <= read["latency_p95_ms"] <= read["latency_p95_high_ms"]
    assert read["speedup_low"] <= read["speedup"] <= read["speedup_high"]
    assert read["speedup"] == pytest.approx(3.0, rel=0.05)
    assert drift(read) == pytest.approx(1.8, rel=0.15)
    alone = reading({"model": timed["model"]}, "model")
    assert "speedup" not in alone and drift(alone) is None


def test_one_window_falls_back_on_its_own_samples_and_has_no_interval_below_72():
    one = reading({"model": fake_windows([1.0], 2.0, n=100)}, "model")
    assert one["latency_p95_low_ms"] < one["latency_p95_ms"] < one["latency_p95_high_ms"]
    few = reading({"model": fake_windows([1.0], 2.0, n=20)}, "model")
    assert few["latency_p95_low_ms"] is None and few["latency_p95_high_ms"] is None


def test_files_are_timed_in_every_window_with_at_least_the_repeats(tmp_path):
    files = {}
    for name, width in (("small", 8), (REFERENCE, 64)):
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 3)).eval()
        files[name] = tmp_path / f"{name}.onnx"
        onnx_export.export(model, torch.zeros(1, 1, 4, 4), files[name])
    timed = time_files(files, np.zeros((4, 1, 4, 4), np.float32), Timing(4, 1, warmup=1, repeats=10, windows=3))
    assert set(timed) == set(files)
    assert all(len(windows) == 3 and all(len(w) >= 10 for w in windows) for windows in timed.values())
    assert all(ms > 0 for windows in timed.values() for w in windows for ms in w)
