"""The checks that measure again: the model's metrics on the fetched test split, and the promotion's paired test
against the champion it faced, each compared with what was recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steps import config, tracking
from steps.core.layout import onnx_path
from steps.core.names import STATISTIC_TAG, Artifact, ModelRole, Tag
from steps.registry.audit.records import logged_json
from steps.registry.audit.report import Check

LATENCY_TOLERANCE = 1.0
"""Relative: |now - recorded| <= 1.0 x recorded, for p50 and for a p95 without a confidence interval on both sides.
Latency depends on the machine and its load; the rest is exact. A p95 with intervals is judged by them instead
(latency_check): a fixed tolerance failed audits of an unchanged model timed on a busier machine."""
EXACT_METRICS = ("accuracy", "parameters", "nonzeros", "file_bytes", "compressed_bytes", "macs")
MEASURED_METRICS = ("latency_p50_ms", "latency_p95_ms")


def metrics_check(root: Path, name: str, version: int, tags: dict[str, str], work: Path,
             latency_tolerance: float) -> list[Check]:

    from steps.compression.training import seed_everything
    from steps.core.datasets import load_splits
    from steps.core.measurement import ONNXRUNTIME, measure_models, timed_on_cpu

    params = config.validate(logged_json(tags[Tag.PROMOTE_RUN], "params.json"))
    seed_everything(params.seed, params.threads)
    test = load_splits(work, ("test",))["test"]
    # The same backend the evaluate run timed: ONNX Runtime runs the registered (sha256-checked) fp32 file.
    onnx_files = None
    if params.evaluate.latency_backend == ONNXRUNTIME:
        student_onnx = work / onnx_path(ModelRole.STUDENT)
        tracking.download_deployable(tracking.model_version(name, version), student_onnx.parent)
        onnx_files = {"student": student_onnx}
    measured = measure_models({"student": (work, ModelRole.STUDENT)}, test, params.evaluate, params.threads,
                              onnx_files)["student"]
    backend = "the registered ONNX file in ONNX Runtime" if onnx_files else "PyTorch eager"
    evaluate_run = tracking.run_record(tags[Tag.EVALUATE_RUN])
    logged = evaluate_run.data.metrics
    clock = dict(evaluate_run.data.tags).get(f"latency.{params.evaluate.latency_backend}")
    rows = []
    for key in (*EXACT_METRICS, *MEASURED_METRICS):
        if key in MEASURED_METRICS and not timed_on_cpu(clock):
            rows.append(Check(f"metric {key}", None, f"timed by the evaluate run on {clock}; the audit re-times on "
                                                      "the CPU only: not compared"))
            continue
        recorded = logged.get(f"student.{key}")
        if recorded is None:
            rows.append(Check(f"metric {key}", False, "not logged by the evaluate run"))
            continue
        now = float(measured[key])
        if key in EXACT_METRICS:
            rows.append(Check(f"metric {key}", now == recorded, "exact", recorded=f"{recorded:.6g}",
                              observed=f"{now:.6g}"))
        else:
            rows.append(latency_check(key, logged, measured, latency_tolerance, backend))
    rows.append(served_check(name, version, tags, work, logged["student.accuracy"]))
    return rows


def served_check(name: str, version: int, tags: dict[str, str], work: Path, student_accuracy: float) -> Check:
    """The registered pyfunc model on the fetched raw test split (raw pixels or rows, as a caller sends them),
    counted against the accuracy recorded at registration: the served accuracy, or for versions registered
    before the contract (which take normalised tensors) the evaluated student accuracy."""
    from steps.registry.comparison import served_labels, test_split

    split = test_split(work)
    labels, y = served_labels(name, version, split), split.y
    correct = int((labels == y).sum())
    recorded = float(tags.get(Tag.SERVED_ACCURACY, student_accuracy))
    recorded_correct = round(recorded * len(y))  # counts: accuracy is recorded in float32 / 6 digits
    how = "raw test split" if Tag.SERVED_ACCURACY in tags else "normalised test split (registered before the contract)"
    return Check("served model accuracy", correct == recorded_correct,
                 f"correct predictions of the registered pyfunc model on the fetched {how}, exact",
                 recorded=f"{recorded_correct}/{len(y)}", observed=f"{correct}/{len(y)}")


P95_INTERVAL = ("latency_p95_low_ms", "latency_p95_high_ms")
"""The ends of the p95's confidence interval (steps/core/measurement.py), re-measured and as the evaluate run
logged them (student.<key>; absent when it timed too few repeats for one)."""


def latency_check(key: str, logged: dict[str, float], measured: dict, tolerance: float, backend: str) -> Check:
    """One re-timed latency metric against the evaluate run's `logged` metrics (student.<key>).

    p95, when both runs have its confidence interval (steps.core.measurement.with_p95_interval): passes when the
    intervals overlap or the re-measured one lies below (faster now), fails only when the re-measured interval
    starts above the recorded one's end, and names both intervals. Load on a shared machine shifts and widens
    the re-measured interval; a clear gap is what says the model got slower. p50, and p95 without intervals:
    |now - recorded| <= tolerance x recorded.
    """
    from steps.core.measurement import P95_CONFIDENCE
    from steps.core.stats.quantiles import min_samples_for_quantile

    recorded, now = logged[f"student.{key}"], float(measured[key])
    timed = f"timed on {backend} as the evaluate run was"
    rule = ""
    if key == "latency_p95_ms":
        before = [logged.get(f"student.{end}") for end in P95_INTERVAL]
        after = [measured.get(end) for end in P95_INTERVAL]
        if None not in before and None not in after:
            (low, high), (new_low, new_high) = before, [float(v) for v in after]
            ok = new_low <= high
            relation = ("they overlap" if ok and low <= new_high else
                        "faster now: the re-measured interval ends below the recorded one" if ok else
                        "slower now: the re-measured interval starts above the recorded one's end")
            return Check(f"metric {key}", ok,
                         f"{P95_CONFIDENCE:.0%} intervals of p95: recorded [{low:.4g}, {high:.4g}] ms, re-measured "
                         f"[{new_low:.4g}, {new_high:.4g}] ms; {relation}; {timed}",
                         recorded=f"{recorded:.6g} [{low:.4g}, {high:.4g}]",
                         observed=f"{now:.6g} [{new_low:.4g}, {new_high:.4g}]")
        which = " and ".join(side for side, ends in (("recorded", before), ("re-measured", after)) if None in ends)
        rule = (f"no {P95_CONFIDENCE:.0%} interval of p95 {which} (it needs "
                f"{min_samples_for_quantile(0.95, P95_CONFIDENCE)} latency samples): ")
    ok = abs(now - recorded) <= tolerance * recorded
    return Check(f"metric {key}", ok, f"{rule}within {tolerance:.0%}, {timed}", recorded=f"{recorded:.6g}",
                 observed=f"{now:.6g}")


def budget_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """A budgeted version's latency limits judged again as evaluate judged them (steps/core/latency.py): the
    registered deployable timed beside the reference file logged with it, at the budget's batch size, in the
    verification's windows. Passes on pass, and on inconclusive (the re-measured interval straddles the limit:
    the machine's noise, not a changed model); fails only when the whole re-measured interval is past the limit.
    Sizes and counts are exact and checked as metrics."""
    from steps.core import budget
    from steps.core.datasets import load_splits

    params = config.validate(logged_json(tags[Tag.PROMOTE_RUN], "params.json"))
    limits = {k: v for k, v in params.target.limits().items() if k in (budget.LATENCY, budget.SPEEDUP)}
    if not limits:
        return []
    mv = tracking.model_version(name, version)
    folder = work / "budget"
    tracking.download_deployable(mv, folder)
    reference = (tracking.download_reference(mv, folder / Artifact.REFERENCE) if Tag.REFERENCE_SHA256 in tags
                 else None)
    batch = budget.timed_batch(load_splits(work, ("test",))["test"], params.target.batch_size)
    measured = budget.file_cost(folder / tags[Tag.DEPLOYABLE], batch, budget.verify_timing(params), reference)
    rows = []
    for key, limit in limits.items():
        recorded = tags.get(f"{Tag.GATE}.target.{key}", "not recorded").split(":")[0]
        if key == budget.SPEEDUP and reference is None:
            rows.append(Check(f"budget {key}", None, "no reference file was logged with this version (registered "
                              "before issue 29): its speedup cannot be re-timed on the same terms", recorded=recorded))
            continue
        verdict = budget.verdict_of(measured, key, limit)
        spec = budget.MEASURED[key]
        interval = f"[{measured[spec.low]:.4g}, {measured[spec.high]:.4g}]"
        rows.append(Check(f"budget {key}", verdict != budget.OVER,
                          f"re-timed as evaluate times it, {measured['windows']} windows: "
                          f"{budget.describe_latency(measured)}; verdict {verdict} against {limit:g}" +
                          ("; inconclusive is not a failure: the interval straddles the limit" if verdict ==
                           budget.INCONCLUSIVE else ""),
                          recorded=recorded, observed=f"{verdict} {measured[spec.estimate]:.4g} {interval}"))
    return rows


def decision_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """Recompute the promotion's paired test vs the champion it faced (both versions served by the registry,
    on the fetched test split, with the logged promote params and the fixed bootstrap seed): every statistic
    the decision recorded must come out the same."""
    from steps.core.stats.classes import worst_of
    from steps.registry import comparison

    recorded, champion = faced_champion(tags)
    if champion is None or not recorded:
        return [nothing_compared()]
    cfg = config.validate(logged_json(tags[Tag.PROMOTE_RUN], "params.json")).promote
    split = comparison.test_split(work)
    y, classes = split.y, split.classes
    before, now = comparison.served_labels(name, champion, split), comparison.served_labels(name, version, split)
    drops = comparison.class_drops(y, before, now, classes, cfg)
    redone = comparison.statistics(comparison.compare(y, before, now, classes, cfg), worst_of(drops))
    return [statistics_check(recorded, redone, tags, f"paired test vs champion v{champion}", "p_value", "p",
                             lambda want, got: f"{len(want)} statistics equal, verdict {redone['verdict']}")]


def nothing_compared() -> Check:
    return Check("decision statistics", None, "no champion at decision time: nothing was compared")


def faced_champion(tags: dict[str, str]) -> tuple[dict, int | None]:
    """(the statistics the promotion's decision recorded, the champion version it faced: None if none)."""
    decision = logged_json(tags[Tag.PROMOTE_RUN], "decision.json")
    return decision.get("statistics") or {}, decision.get("incumbent_version")


def statistics_check(recorded: dict, redone: dict, tags: dict[str, str], compared: str, key: str, label: str,
                     agreed: Callable[[dict, dict], str]) -> Check:
    """The recomputed `redone` statistics against the `recorded` ones, compared as the version's tags print them
    (6 significant digits) and against the tags themselves; `key` (its `label`) shown as the row's values,
    `agreed(want, got)` the detail when every statistic is equal."""
    from steps.registry.history import statistics_tags

    want, got, shown = statistics_tags(recorded), statistics_tags(redone), f"{STATISTIC_TAG}.{key}"
    differing = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k) or tags.get(k) != want.get(k))
    return Check("decision statistics", not differing,
                 f"{compared} recomputed: " + (
                     "differs in " + ", ".join(f"{k.rsplit('.', 1)[-1]} (recorded {want.get(k)}, tagged "
                                               f"{tags.get(k)}, now {got.get(k)})" for k in differing)
                     if differing else agreed(want, got)),
                 recorded=f"{label}={want.get(shown)}", observed=f"{label}={got.get(shown)}")
