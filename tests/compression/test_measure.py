import pytest
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


def test_latency_times_each_model_in_eval_mode_at_the_thread_count_and_restores_both():
    threads = torch.get_num_threads()
    seen = {"small": [], "big": []}

    class Recording(nn.Linear):
        def __init__(self, name):
            super().__init__(4, 2)
            self.name = name

        def forward(self, x):
            seen[self.name].append((torch.get_num_threads(), self.training))
            return super().forward(x)

    models = {name: Recording(name).train() for name in seen}
    result = measure.latency_ms(models, torch.randn(3, 4), warmup=2, repeats=7, threads=threads + 1,
                                keep_samples=True)
    assert set(result) == {"small", "big"}
    assert all(r["n"] == len(r["samples"]) == 7 for r in result.values())  # warm-up calls are not timed
    assert seen["small"] == seen["big"] == [(threads + 1, False)] * (2 + 7)
    assert torch.get_num_threads() == threads
    assert all(model.training for model in models.values())  # evaluation helpers restore the previous mode


def test_peak_memory_grows_with_batch_and_width():
    small = build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]))
    wide = build(ModelSpec(name="cnn", channels=[32, 64], hidden=[16]))
    x = torch.randn(64, 1, 28, 28)
    # the first conv of the wide model alone outputs 64*32*28*28 float32 values
    assert measure.peak_memory_bytes(wide, x) >= 64 * 32 * 28 * 28 * 4
    assert measure.peak_memory_bytes(small, x) < measure.peak_memory_bytes(wide, x)
    assert measure.peak_memory_bytes(wide, x[:8]) < measure.peak_memory_bytes(wide, x)


class FakeClock:
    """Seconds that pass only when a fake runner says so: the timing logic without the machine's noise."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def runner(self, *seconds: float):
        """A call that takes seconds[0], then seconds[1], ..., and then seconds[-1] each time."""
        calls = iter(range(10**9))
        return lambda: setattr(self, "now", self.now + seconds[min(next(calls), len(seconds) - 1)])


def test_samples_are_the_durations_of_the_timed_calls_only():
    clock = FakeClock()
    # warm-up calls take 1 s: counted into a sample, they would show
    runners = {"a": clock.runner(1.0, 1.0, 2**-9), "b": clock.runner(1.0, 1.0, 2**-8)}
    timed = measure.interleaved_samples(runners, warmup=2, repeats=4, clock=clock)
    assert timed == {"a": [2**-9 * 1e3] * 4, "b": [2**-8 * 1e3] * 4}


def test_timing_goes_on_past_the_repeats_until_min_seconds_have_passed():
    clock = FakeClock()
    round_s = 2**-9 + 2**-8  # a round times a then b (powers of two: sums are exact)
    runners = {"a": clock.runner(2**-9), "b": clock.runner(2**-8)}
    only_repeats = measure.interleaved_samples(runners, warmup=1, repeats=5, clock=clock)
    assert [len(v) for v in only_repeats.values()] == [5, 5]
    timed = measure.interleaved_samples(runners, warmup=1, repeats=5, min_seconds=10 * round_s, clock=clock)
    assert [len(v) for v in timed.values()] == [10, 10]  # whole rounds until 10 rounds' time has passed
    assert timed["a"] == [2**-9 * 1e3] * 10 and timed["b"] == [2**-8 * 1e3] * 10


def test_percentiles_of_the_samples_interpolate_linearly():
    clock = FakeClock()
    # call i takes i ms, in a shuffled order: the percentiles must not depend on it
    durations = [(7 * i) % 20 + 1 for i in range(20)]
    assert sorted(durations) == list(range(1, 21))
    result = measure.interleaved_ms({"a": clock.runner(*(d / 1e3 for d in durations))}, warmup=0, repeats=20,
                                    keep_samples=True, clock=clock)["a"]
    # np.quantile's linear rule on 1..20: position q * 19 from the smallest
    assert result["p50"] == pytest.approx(10.5) and result["p95"] == pytest.approx(19.05)
    assert result["max"] == pytest.approx(20) and result["n"] == 20
    assert result["samples"] == pytest.approx(durations)


def test_runners_take_turns_in_a_rotating_order():
    order = []
    runners = {name: (lambda n=name: order.append(n)) for name in "abc"}
    measure.interleaved_samples(runners, warmup=1, repeats=3)
    assert "".join(order) == "abc" + "abc" + "bca" + "cab"  # warm-up, then each round starts one later


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
