"""Promote a language model (data.task causal_lm): register the student's served generator and gate it on
perplexity.

The version holds the student's `from_pretrained` folder (its tokenizer.json beside the weights) served as a
pyfunc that continues prompt strings (steps/serving/generator.py), the deployable ONNX files, and lineage tags as
for any model, with the student's test perplexity (Tag.PERPLEXITY). The gates:
- max_perplexity_ratio: the deployable file's test perplexity (ONNX Runtime, the quantize stage's) over the
  teacher's; it replaces the accuracy gates, which a next-token accuracy does not fit;
- max_param_ratio, as for every model;
- against the champion: both scored on today's test documents, paired by document (stats/likelihood.py): the
  candidate takes @champion when the perplexity ratio's interval lies below 1 (better), or its upper end is at
  most 1 + promote.perplexity_margin and the candidate is smaller (non-inferior and smaller).
Before anything is decided, the served model must generate, from the evaluate report's prompts, what the student
generated there: the version serves what was evaluated.
"""

from __future__ import annotations

from pathlib import Path

from steps import config, tracking
from steps.core import datasets, lineage
from steps.core.files import write_json
from steps.core.layout import PROMOTION, REPORT, deployable_files, metrics_path, model_dir, model_files
from steps.core.names import Alias, Artifact, ModelRole, Tag
from steps.core.results import EvaluateReport, QuantizeResult
from steps.core.torchkit import load_model
from steps.promote.champion import champion_costs, cost_metrics
from steps.promote.decision import BEAT_CHAMPION_GATE, Candidate, Decision, advantage
from steps.promote.gates import Gate
from steps.registry import artifacts, lm_comparison
from steps.registry.lock import promotion_lock, this_process

EXAMPLE_PROMPTS = 2


def run(params: config.Params, root: Path, origin: lineage.Origin) -> Decision:
    from steps.promote import lineage_tags, log_decision, mark_failed, record

    cfg = params.promote
    report = EvaluateReport.read(root / REPORT).to_dict()
    manifest = datasets.read_manifest(root)
    name = cfg.resolved_model_name(manifest)
    gates = language_gates(report, QuantizeResult.read(root / metrics_path("quantize")).to_dict(), cfg)
    load_model(root, ModelRole.STUDENT)  # a damaged checkpoint is refused before anything is registered
    tracking.use_store(root)
    comparable = check_same_line(name, manifest["tokenizer"]["sha256"], cfg.replace_contract)
    trigger = origin.trigger or this_process()
    prompts = report["language"]["prompts"]
    with tracking.open_run(root, **lineage.stage_run(root, params, "promote", origin)) as run_id:
        tracking.log_files([root / f for f in model_files(ModelRole.STUDENT, True)], Artifact.MODEL_FILES)
        tracking.log_dict(params.model_dump(mode="json"), "params.json")
        version = tracking.log_generator(root / model_dir(ModelRole.STUDENT), name, example=prompts[:EXAMPLE_PROMPTS])
        candidate = Candidate(model_name=name, version=version, metrics=report["models"][ModelRole.STUDENT])
        try:
            decision = decide(root, params, report, run_id, candidate, gates, trigger, comparable, record,
                              lineage_tags)
        except BaseException as err:
            mark_failed(name, version, err)
            raise
        log_decision(decision)
    write_json(root / PROMOTION, decision.to_dict())
    return decision


def language_gates(report: dict, quantized: dict, cfg: config.PromoteConfig) -> list[Gate]:
    """The gates that need no registry: the deployable file's perplexity against the teacher's, and size."""
    student, teacher = report["models"][ModelRole.STUDENT], report["models"][ModelRole.TEACHER]
    deployable = quantized["variants"][quantized["deploy"]]
    ratio = deployable["perplexity"] / teacher["perplexity"]
    params_ratio = student["parameters"] / teacher["parameters"]
    return [Gate("max_perplexity_ratio", ratio, cfg.max_perplexity_ratio, ratio <= cfg.max_perplexity_ratio,
                 f"{quantized['deploy']} file {deployable['perplexity']:.4g} vs the teacher's "
                 f"{teacher['perplexity']:.4g} on the test documents"),
            Gate("max_param_ratio", params_ratio, cfg.max_param_ratio, params_ratio <= cfg.max_param_ratio)]


def check_same_line(name: str, tokenizer_sha256: str, replace: bool) -> bool:
    """Whether the champion (if any) can be scored beside the candidate on today's test blocks: a language model
    reading the same token ids (its tokenizer's sha256 tag is the data's). Otherwise refused, naming both and the
    ways out, unless `replace` (promote.replace_contract) starts a new line on purpose: then False, and the
    candidate is judged as if there were no champion. Another tokenizer's ids would be scored as garbage."""
    champion = tracking.alias_version(name, Alias.CHAMPION)
    if champion is None:
        return True
    version = int(champion.version)
    if not tracking.serves_language_model(name, version):
        difference = "it is not a language model"
    else:
        theirs = dict(champion.tags).get(Tag.TOKENIZER_SHA256)
        difference = None if theirs == tokenizer_sha256 else \
            f"it reads the token ids of tokenizer sha256 {theirs}, the data's tokenizer is {tokenizer_sha256}"
    if difference is not None and not replace:
        raise ValueError(f"{name}: the champion v{version} cannot be compared with this candidate ({difference}). "
                         "Register it under another name (promote.model_name), or start a new line on purpose with "
                         "-S promote.replace_contract=true. Nothing was registered.")
    return difference is None


def decide(root: Path, params: config.Params, report: dict, run_id: str, candidate: Candidate, gates: list[Gate],
           trigger: str, comparable: bool, record, lineage_tags) -> Decision:
    """From the registered `candidate` to its recorded decision: its files and tags, the served check, the decision
    against the champion under the registry lock."""
    cfg = params.promote
    name, version = candidate.model_name, candidate.version
    files, deployable = deployable_files(root)
    tracking.log_deployable(name, version, files, deployable)
    digests = artifacts.artifact_digests(name, version, run_id)
    tracking.log_dict(digests, "artifacts.json")
    check_served_generations(name, version, report, params.evaluate.generation_tokens)
    student = report["models"][ModelRole.STUDENT]
    tags = lineage_tags(root, params, report, run_id) | {Tag.ARTIFACTS_SHA256: artifacts.digest_of(digests),
                                                         Tag.PERPLEXITY: repr(float(student["perplexity"]))}
    tracking.tag_version(name, version, tags)
    tracking.log_metrics(cost_metrics(candidate))
    with promotion_lock(name, cfg.lock_timeout_s, trigger):
        decision = judge(root, report, candidate, gates, cfg, comparable)
        record(decision, tags, report, trigger)
    return decision


def check_served_generations(name: str, version: int, report: dict, tokens: int) -> None:
    """ValueError unless the registered pyfunc continues the report's prompts as the student did in evaluate."""
    import torch

    threads = torch.get_num_threads()  # loading the served model sets its own (serving's) thread count
    try:
        served = tracking.load_predictor(name, version)
        prompts = report["language"]["prompts"]
        answers = served.predict(prompts, params={"max_new_tokens": tokens})["generated"].tolist()
    finally:
        torch.set_num_threads(threads)
    expected = report["language"]["generations"][ModelRole.STUDENT]
    differ = [i for i, (a, b) in enumerate(zip(answers, expected, strict=True)) if a != b]
    if differ:
        raise ValueError(f"{name} v{version}: the served model continues prompt {differ[0]} "
                         f"({prompts[differ[0]]!r}) with {answers[differ[0]]!r}, the evaluated student with "
                         f"{expected[differ[0]]!r}: it does not serve what was evaluated")


def judge(root: Path, report: dict, candidate: Candidate, gates: list[Gate], cfg: config.PromoteConfig,
          comparable: bool = True) -> Decision:
    """The decision: the gates, then (when `comparable`) the champion scored beside the candidate on today's test
    documents."""
    name, version = candidate.model_name, candidate.version
    champion = tracking.alias_version(name, Alias.CHAMPION) if comparable else None
    statistics, basis = {}, "no champion"
    incumbent_version = None if champion is None else int(champion.version)
    if champion is not None:
        statistics = lm_comparison.champion_comparison(root, report["language"]["documents"][ModelRole.STUDENT],
                                                       name, incumbent_version, cfg.bootstrap_resamples)
        gate, basis = champion_gate(candidate, statistics, champion, cfg)
        gates = [*gates, gate]
    failed = [g for g in gates if not g.passed]
    promoted = not failed
    if failed:
        reason = "failed gate " + ", ".join(f"{g.name} ({g.verdict})" for g in failed)
    elif champion is None:
        reason = "passed all gates; no champion yet"
    else:
        reason = f"passed all gates and took @champion from v{incumbent_version} as {basis}"
    return Decision(model_name=name, version=version, promoted=promoted,
                    alias=(Alias.CHAMPION if promoted else Alias.CHALLENGER).value, reason=reason,
                    accuracy=candidate.accuracy, gates=gates, failed_gates=[g.name for g in failed],
                    basis=basis if promoted else "", incumbent_version=incumbent_version,
                    incumbent_accuracy=statistics.get("champion_next_token_accuracy"), statistics=statistics)


def champion_gate(candidate: Candidate, statistics: dict, champion, cfg: config.PromoteConfig) -> tuple[Gate, str]:
    """beat_champion: better (the ratio's interval below 1), or non-inferior (its upper end within the margin) and
    smaller; the basis it passed on, '' when it did not."""
    high, limit = statistics["perplexity_ratio_high"], 1 + cfg.perplexity_margin
    detail = (f"perplexity ratio to champion v{statistics['champion_version']} {statistics['perplexity_ratio']:.4g}, "
              f"95% CI [{statistics['perplexity_ratio_low']:.4g}, {high:.4g}] over "
              f"{statistics['documents']} test documents")
    basis = ""
    if high < 1:
        basis = "better"
    elif high <= limit:
        edge = advantage(candidate.metrics, champion_costs(champion))
        basis = f"non_inferior and {edge}" if edge else ""
        if not edge:
            detail += "; non-inferior but neither smaller nor faster"
    return Gate(BEAT_CHAMPION_GATE, high, limit, bool(basis), detail), basis
