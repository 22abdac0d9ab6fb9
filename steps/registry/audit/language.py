"""The audit of a registered language model (its MLflow model's task is causal_lm, steps/promote/language.py): what
differs from a classifier's.

A generator has no contract, so its tokenizer is checked where it lives: the served pyfunc's folder, the promote
run's model files and the fetched data. Its metrics are re-measured from the verified model files on the fetched
test blocks, by the code and settings evaluate used, so they come out bit for bit: perplexity against its tag's
repr, exactly; the next-token accuracy against its tag; and the served model must continue the evaluate run's
prompts with the logged generations. The promotion's paired document bootstrap against the champion it faced is
recomputed with promote's own function. Language models have no latency budget. Retrained at its commit (audit
--retrain), the student is compared with the evaluate run's metrics by retrain_rows: perplexity within a relative
tolerance, next-token accuracy within --retrain-tolerance, its sizes exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

from steps import config, tracking
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, model_dir
from steps.core.names import STATISTIC_TAG, Artifact, ModelRole, Tag
from steps.registry.audit.records import logged_json
from steps.registry.audit.report import Check

LOGGED_EXACT = ("tokens", "documents", "loss", "bits_per_byte", "parameters", "nonzero_parameters")
"""The student's metrics the evaluate run logged that the audit recomputes and compares exactly, beside perplexity
and next-token accuracy (which are compared with the version's tags as well)."""
BUDGET_SKIPPED = Check("budget", None, "a language model has no latency budget: evaluate times its generation but no "
                                       "target.* limit is judged for it")
LATENCY_SKIPPED = Check("metric latency", None, "the generation latency (prefill and decode with the KV cache) is "
                                                "not re-timed: no gate or budget reads it for a language model")
RETRAIN_PERPLEXITY_TOLERANCE = 1e-3
"""Relative perplexity difference allowed for a student retrained at its commit (audit --retrain). On the same CPU
the rerun gives the same bits (the tiny Llama of tests/registry/test_lm_retrain.py: weights with the same sha256,
perplexity with the same repr; also with 2 threads instead of 1), and the row says so; the tolerance only absorbs
another CPU's floating-point kernels, whose last-bit differences training carries forward. 0.1% is a twentieth of
promote.perplexity_margin's default (0.02: the perplexity ratio a promotion still takes for non-inferior) and far
below what another model gives (seed 1 instead of 0 moved that Llama's perplexity by 6.3% and its next-token
accuracy by 0.06), so a student trained otherwise fails.
--retrain-tolerance stays an absolute accuracy tolerance: a language model's next-token accuracy."""
RETRAIN_EXACT = ("parameters", "nonzero_parameters")
"""The student's sizes the evaluate run logged (a language model's report has no MACs or file bytes), compared
exactly with the retrained student's."""


def is_language_model(name: str, version: int) -> bool:
    """The version serves a generator (its MLflow model's metadata says causal_lm): the audit takes this module's
    checks instead of a classifier's. A version whose MLmodel cannot be read is taken for a classifier, as before
    language models: its artifacts check names the damage."""
    return tracking.serves_language_model(name, version)


def tokenizer_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """The tokenizer.json in the served folder (artifact hf_model), in the promote run's model files and the fetched
    data's all have the sha256 tagged at promotion: a token id means the same word when served, evaluated and
    trained."""
    from steps.core.datasets import read_manifest
    from steps.serving.classifier import HF_ARTIFACT
    from steps.serving.generator import TOKENIZER_FILE

    recorded = tags.get(Tag.TOKENIZER_SHA256)
    if recorded is None:
        return [Check("tokenizer.sha256", False, f"a language model without its {Tag.TOKENIZER_SHA256} tag: nothing "
                      "says which tokenizer it was trained with", recorded="missing")]
    served = tracking.served_artifacts(name, version, work / "served-model")
    logged = f"{Artifact.MODEL_FILES}/{Path(model_dir(ModelRole.STUDENT)).name}/{TOKENIZER_FILE}"
    data_file = (read_manifest(work).get("tokenizer") or {}).get("file", TOKENIZER_FILE)
    found = {"served folder": served[HF_ARTIFACT] / TOKENIZER_FILE if HF_ARTIFACT in served else None,
             "model files": _run_file(tags[Tag.PROMOTE_RUN], logged, work / "model-files-tokenizer"),
             "fetched data": work / DATA_DIR / data_file}
    now = {what: sha256(path) if path is not None and path.is_file() else "missing" for what, path in found.items()}
    differing = [f"{what} {digest[:12]}" for what, digest in now.items() if digest != recorded]
    return [Check("tokenizer.sha256", not differing,
                  ("differs from the tag: " + ", ".join(differing)) if differing else
                  f"the version's tag equals the sha256 of the tokenizer.json in its {', '.join(now)}",
                  recorded=recorded[:16], observed=differing[0] if differing else recorded[:16])]


def _run_file(run_id: str, path: str, dest: Path) -> Path | None:
    """One file of a run's artifacts (the tokenizer alone, not the weights beside it); None when it is not there."""
    return tracking.download_if_logged(tracking.run_artifact_uri(run_id, path), dest)


def metrics_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """The student of the version's (verified) model files scored again on the fetched test blocks as evaluate
    scored it, compared with its tags and the evaluate run's metrics; then its served generations."""
    from steps.compression import measure

    params = _logged_params(tags)
    model, scores = student_scores(work, params)
    measured = {**scores.metrics, "parameters": measure.parameters(model), "nonzero_parameters": measure.nonzeros(model)}
    logged = tracking.run_record(tags[Tag.EVALUATE_RUN]).data.metrics
    rows = [perplexity_check(tags, logged, measured["perplexity"]),
            accuracy_check(tags, logged, measured["next_token_accuracy"], measured["tokens"])]
    for key in LOGGED_EXACT:
        recorded = logged.get(f"student.{key}")
        now = float(measured[key])
        rows.append(Check(f"metric {key}", recorded is not None and (now == recorded or _both_nan(now, recorded)),
                          "exact, against the evaluate run's metric" if recorded is not None else
                          f"the evaluate run logged no student.{key}",
                          recorded="missing" if recorded is None else f"{recorded:.10g}", observed=f"{now:.10g}"))
    rows.append(LATENCY_SKIPPED)
    rows.append(generations_check(name, version, tags, params))
    return rows


def student_scores(work: Path, params: config.Params):
    """(model, language.score_split scores) of the student rebuilt in `work` (artifacts_check puts the version's
    model files where evaluate reads them), loaded and scored as evaluate did: the same loader, the same batch of
    blocks per forward pass and the same torch threads, so every float comes out the same."""
    from steps.compression import language
    from steps.compression.training import seed_everything
    from steps.core import datasets
    from steps.core.torchkit import load_model

    seed_everything(params.seed, params.threads)
    blocks = datasets.load_blocks(work, "test", datasets.read_manifest(work))
    model = load_model(work, ModelRole.STUDENT)[0].hf.eval()
    return model, language.score_split(model, blocks)


def perplexity_check(tags: dict[str, str], logged: dict[str, float], now: float) -> Check:
    """Exact: the re-measured float's repr must equal the tag (and the evaluate run's metric). The forward pass is
    deterministic on CPU with the threads, batches and code evaluate used, and the log-likelihoods are summed in
    float64, so an unchanged model gives the same bits; a tolerance (even 1e-9 relative) would only hide a change
    smaller than it. Another CPU's kernels can move the last bits: the detail gives the relative difference, so a
    reader tells that from a changed model."""
    recorded, metric = tags.get(Tag.PERPLEXITY), logged.get("student.perplexity")
    if recorded is None:
        return Check("metric perplexity", False, f"no {Tag.PERPLEXITY} tag: the version records no perplexity",
                     recorded="missing", observed=repr(now))
    tagged = _float(recorded)
    ok = repr(now) == recorded and metric == now
    if ok:
        detail = "exact (the float's repr), against the tag and the evaluate run's metric"
    else:
        relative = abs(now - tagged) / abs(tagged) if tagged not in (None, 0.0) else math.inf
        detail = (f"exact (the float's repr) required: re-measured {now!r}, tagged {recorded!r} (relative difference "
                  f"{relative:.3g}), the evaluate run logged {metric!r}")
    return Check("metric perplexity", ok, detail, recorded=recorded, observed=repr(now))


def accuracy_check(tags: dict[str, str], logged: dict[str, float], now: float, tokens: int) -> Check:
    """Next-token accuracy: the tag holds it to 6 decimals (promote's format), the evaluate run the float."""
    recorded, metric = tags.get(Tag.ACCURACY, "missing"), logged.get("student.next_token_accuracy")
    ok = f"{now:.6f}" == recorded and metric == now
    return Check("metric next_token_accuracy", ok,
                 f"exact: {round(now * tokens)} of {tokens} test tokens predicted, against the tag (6 decimals) and "
                 f"the evaluate run's metric ({metric!r})", recorded=recorded, observed=f"{now:.6f}")


def generations_check(name: str, version: int, tags: dict[str, str], params: config.Params) -> Check:
    """The registered pyfunc, loaded as MLflow serves it, continues the evaluate run's prompts (generations.json)
    with the student's logged generations, exactly."""
    logged = logged_json(tags[Tag.EVALUATE_RUN], "generations.json")
    prompts, expected = logged["prompts"], logged["generations"][ModelRole.STUDENT.value]
    served = tracking.load_predictor(name, version).predict(
        prompts, params={"max_new_tokens": params.evaluate.generation_tokens})["generated"].tolist()
    differ = [i for i, (a, b) in enumerate(zip(served, expected, strict=True)) if a != b]
    detail = (f"the served model continues prompt {differ[0]} ({prompts[differ[0]]!r}) with {served[differ[0]]!r}, "
              f"the evaluated student with {expected[differ[0]]!r}" if differ else
              f"the served model continues the {len(prompts)} prompts of the evaluate run as logged "
              f"({params.evaluate.generation_tokens} new tokens, greedy)")
    return Check("served model generations", not differ, detail, recorded=f"{len(expected)} generations",
                 observed=f"{len(expected) - len(differ)} equal")


def decision_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """Recompute the champion comparison the promotion made (steps/registry/lm_comparison.py, its paired document
    bootstrap with promote.bootstrap_resamples and the same seed): the champion's registered folder
    scored on the fetched test blocks, paired with the candidate's per-document scores, re-measured here from its
    model files (evaluate's report, which promote read them from, is not in the registry). Compared at the 6
    significant digits of the version's statistic tags, against decision.json and the tags themselves."""
    from steps.registry.audit.remeasure import faced_champion, nothing_compared, statistics_check
    from steps.registry.lm_comparison import champion_comparison

    recorded, champion = faced_champion(tags)
    if champion is None or not recorded:
        return [nothing_compared()]
    params = _logged_params(tags)
    _, candidate = student_scores(work, params)
    redone = champion_comparison(work, candidate.document_ll.tolist(), name, int(champion),
                                 params.promote.bootstrap_resamples)
    key = f"{STATISTIC_TAG}.perplexity_ratio"
    return [statistics_check(recorded, redone, tags, f"paired document bootstrap vs champion v{champion}",
                             "perplexity_ratio", "ratio",
                             lambda want, got: f"{len(want)} statistics equal, perplexity ratio {got.get(key)} "
                                               f"[{got.get(key + '_low')}, {got.get(key + '_high')}]")]


def retrain_rows(student: dict, weights_sha256: str, logged: dict[str, float], tags: dict[str, str],
                 tolerance: float) -> list[Check]:
    """The student retrained at its commit (its evaluate report's metrics and the sha256 of its weights) against the
    evaluate run's student.* metrics: perplexity within RETRAIN_PERPLEXITY_TOLERANCE (relative), next-token accuracy
    within `tolerance` (absolute, --retrain-tolerance), parameters and non-zero parameters exact."""
    identical = weights_sha256 == tags.get(Tag.MODEL_SHA256)
    weights = ("its weights have the version's sha256" if identical else
               f"its weights differ from the version's (sha256 {weights_sha256[:12]}, tagged "
               f"{tags.get(Tag.MODEL_SHA256, 'missing')[:12]})")
    rows = [_retrained_perplexity(float(student["perplexity"]), logged.get("student.perplexity"), weights)]
    recorded, now = logged.get("student.next_token_accuracy"), float(student["next_token_accuracy"])
    rows.append(Check("retrain next_token_accuracy", recorded is not None and abs(now - recorded) <= tolerance,
                      f"within {tolerance} (absolute, --retrain-tolerance)" if recorded is not None else
                      "the evaluate run logged no student.next_token_accuracy",
                      recorded=_shown(recorded, ".6g"), observed=f"{now:.6g}"))
    for key in RETRAIN_EXACT:
        recorded, now = logged.get(f"student.{key}"), float(student[key])
        rows.append(Check(f"retrain {key}", now == recorded,
                          "exact" if recorded is not None else f"the evaluate run logged no student.{key}",
                          recorded=_shown(recorded, ".10g"), observed=f"{now:.10g}"))
    return rows


def _retrained_perplexity(now: float, recorded: float | None, weights: str) -> Check:
    """Within RETRAIN_PERPLEXITY_TOLERANCE of the evaluate run's, relative; the detail says whether it is the same
    float, and whether the weights are the same bits."""
    if recorded is None:
        return Check("retrain perplexity", False, f"the evaluate run logged no student.perplexity; {weights}",
                     recorded="missing", observed=repr(now))
    relative = abs(now - recorded) / abs(recorded) if recorded else math.inf
    within = relative <= RETRAIN_PERPLEXITY_TOLERANCE  # NaN on either side fails
    detail = ("the same float as the evaluate run's" if now == recorded else
              f"relative difference {relative:.3g}, {'within' if within else 'beyond'} "
              f"{RETRAIN_PERPLEXITY_TOLERANCE:g}")
    return Check("retrain perplexity", within, f"{detail}; {weights}", recorded=repr(recorded), observed=repr(now))


def _shown(value: float | None, spec: str) -> str:
    return "missing" if value is None else format(value, spec)


def _logged_params(tags: dict[str, str]) -> config.Params:
    return config.validate(logged_json(tags[Tag.PROMOTE_RUN], "params.json"))


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _both_nan(a: float, b: float) -> bool:
    return math.isnan(a) and math.isnan(b)
