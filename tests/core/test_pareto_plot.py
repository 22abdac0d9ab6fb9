"""The Pareto plot a person reads (issue 18): readable axes, points named by what made them, p95 intervals."""

from __future__ import annotations

from steps.core.reports import close_figure, report_figure


def report() -> dict:
    def model(acc: float, nonzeros: int, p95: float) -> dict:
        return {"accuracy": acc, "parameters": nonzeros, "nonzeros": nonzeros, "file_bytes": 4 * nonzeros,
                "compressed_bytes": 3 * nonzeros, "macs": 10 * nonzeros, "latency_p50_ms": p95 * 0.8,
                "latency_p95_ms": p95, "latency_p95_low_ms": p95 * 0.9, "latency_p95_high_ms": p95 * 1.2,
                "speedup": 1.0, "peak_memory_bytes": 1, "latency": {}}

    # 300k..450k non-zeros: less than a decade, where matplotlib's log axis printed overlapping 3x10^5 4x10^5
    return {"models": {"teacher": model(0.91, 450_000, 2.0), "pruned": model(0.90, 380_000, 1.5),
                       "student": model(0.89, 300_000, 0.5)},
            "latency_batch_size": 256, "latency_backend": "onnxruntime", "threads": 2}


def test_points_are_labelled_by_what_made_them_and_axes_print_plain_numbers():
    labels = {"teacher": "teacher (cnn 32-64-256)", "pruned": "pruned (structured 50%)",
              "student": "student (cnn 16-32-32, from pruned)"}
    figure = report_figure(report(), labels)
    try:
        figure.canvas.draw()
        latency, size = figure.axes[:2]
        assert sorted(t.get_text() for t in latency.texts) == sorted(labels.values())
        assert "p95" in latency.get_xlabel()
        assert latency.collections and len(latency.lines) + len(latency.collections) >= 2  # points + error bars
        minor = [t.get_text() for t in size.xaxis.get_minorticklabels() if t.get_text()]
        assert minor == []  # no 3x10^5 4x10^5
        major = [t.get_text() for t in size.xaxis.get_majorticklabels() if t.get_text()]
        assert major and all("^" not in t and "times" not in t for t in major)
        assert any(t.endswith("k") for t in major), major
    finally:
        close_figure(figure)
