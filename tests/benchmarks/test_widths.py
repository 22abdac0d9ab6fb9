from tests.benchmarks.quick import run_quick, written


def test_widths_benchmark_runs_quick(tmp_path):
    result = run_quick("widths.py", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # the rounded widths are the ones prune.round_to keeps: 25% of 32/64/128 and 256, multiples of 16
    assert "| 25% of channels, round_to 16: 16/48/96 / 192 |" in result.stdout
    assert "| 35% of channels, round_to 1: 21/42/83 / 166 |" in result.stdout
    written(tmp_path, "widths")
