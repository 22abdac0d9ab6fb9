import time

import torch
from torch import nn

from steps.compression import measure, pruning
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec


def test_counts_parameters_and_nonzeros():
    model = nn.Linear(10, 5)
    assert measure.parameters(model) == 55
    with torch.no_grad():
        model.weight[:2] = 0
    assert measure.nonzeros(model) == 55 - 20


def test_macs_of_a_linear_layer():
    # torch-pruning's counter: 10*5 multiply-accumulates plus 5 bias additions
    assert measure.macs(nn.Linear(10, 5), torch.randn(1, 10)) == 55
    assert measure.macs(nn.Linear(10, 5, bias=False), torch.randn(1, 10)) == 50


def test_student_costs_fewer_macs_than_teacher():
    x = torch.randn(1, 1, 28, 28)
    big = build(ModelSpec(name="cnn", channels=[16, 32], hidden=[64]))
    small = build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]))
    assert measure.macs(small, x) < measure.macs(big, x)


def test_pruned_weights_compress_better(tmp_path):
    from steps.compression.families import checkpoint

    spec = ModelSpec(name="mlp", hidden=[256])
    torch.manual_seed(0)
    dense = build(spec)
    checkpoint.save(dense, spec, tmp_path / "d.safetensors", tmp_path / "d.json")
    pruning.prune_magnitude(dense, 0.9, "global")
    pruning.fold(dense)
    checkpoint.save(dense, spec, tmp_path / "p.safetensors", tmp_path / "p.json")
    assert measure.file_size(tmp_path / "p.safetensors") == measure.file_size(tmp_path / "d.safetensors")
    assert measure.compressed_size(tmp_path / "p.safetensors") < 0.5 * measure.compressed_size(tmp_path / "d.safetensors")


def test_latency_reports_ordered_percentiles_and_restores_threads():
    threads = torch.get_num_threads()
    small = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)).train()
    big = nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    result = measure.latency_ms({"small": small, "big": big}, torch.randn(64, 784), warmup=1, repeats=7, threads=1)
    assert set(result) == {"small", "big"}
    assert all(0 < r["p50"] <= r["p95"] for r in result.values())
    assert result["small"]["p50"] < result["big"]["p50"]  # ~70x fewer MACs
    assert torch.get_num_threads() == threads
    assert small.training  # evaluation helpers restore the previous mode


def test_peak_memory_grows_with_batch_and_width():
    small = build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]))
    wide = build(ModelSpec(name="cnn", channels=[32, 64], hidden=[16]))
    x = torch.randn(64, 1, 28, 28)
    # the first conv of the wide model alone outputs 64*32*28*28 float32 values
    assert measure.peak_memory_bytes(wide, x) >= 64 * 32 * 28 * 28 * 4
    assert measure.peak_memory_bytes(small, x) < measure.peak_memory_bytes(wide, x)
    assert measure.peak_memory_bytes(wide, x[:8]) < measure.peak_memory_bytes(wide, x)


def _busy(ms: float):
    """A call that takes `ms` of wall time (busy, not asleep: what a timed model call is like)."""
    def run():
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            pass
    return run


def test_timing_goes_on_past_the_repeats_until_min_seconds_have_passed():
    only_repeats = measure.interleaved_samples({"a": _busy(0.2), "b": _busy(0.2)}, warmup=1, repeats=5)
    assert [len(v) for v in only_repeats.values()] == [5, 5]
    timed = measure.interleaved_samples({"a": _busy(0.2), "b": _busy(0.2)}, warmup=1, repeats=5, min_seconds=0.05)
    assert len(timed["a"]) == len(timed["b"]) > 5  # whole rounds: every runner timed as often
    assert sum(timed["a"]) + sum(timed["b"]) >= 0.9 * 50  # ms: the calls filled (nearly all of) the 50 ms


def test_min_seconds_stops_at_the_bound_on_calls(monkeypatch):
    monkeypatch.setattr(measure, "MAX_CALLS", 10)
    timed = measure.interleaved_samples({"a": lambda: None}, warmup=0, repeats=3, min_seconds=60)
    assert len(timed["a"]) == 10


def test_turns_of_a_block_time_each_runner_back_to_back_after_one_untimed_call():
    order = []
    runners = {name: (lambda n=name: order.append(n)) for name in "ab"}
    timed = measure.interleaved_samples(runners, warmup=0, repeats=12, block=5)
    assert [len(v) for v in timed.values()] == [15, 15]  # whole turns: 3 of 5 timed calls each
    assert order[:12] == ["a"] * 6 + ["b"] * 6  # one untimed call, then the five timed ones
    assert order[12:18] == ["b"] * 6  # the next round starts with the other runner
