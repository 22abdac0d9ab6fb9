"""Minitron at small scale (issue 27, benchmark part 1): a Llama trained from scratch on the Brown corpus, pruned
to about half its non-embedding parameters by width, by depth and by both, each pruned model distilled from it by
its logits alone, against the combined shape trained from scratch on as many tokens.

    .venv/bin/python benchmarks/lm_minitron.py                     # the full run (about an hour on 2 cores)
    .venv/bin/python benchmarks/lm_minitron.py --work /tmp/mini    # keep the folders: a rerun reuses the teacher
    .venv/bin/python benchmarks/lm_minitron.py --quick             # a few documents and a tiny model (~1 min)
    .venv/bin/python benchmarks/lm_minitron.py --student-documents 150   # students on 150 of the 375 documents

Everything runs through the pipeline's own stage functions (data, teacher, prune, distill) in scratch project
folders, in this one process. The data: the Brown corpus's 500 documents (benchmarks/lm_assets.py), split by
document (100 test, 25 validation), a byte-level BPE of 8,000 tokens trained on the training documents only,
blocks of 128 tokens. The teacher: Llama (hidden 256, 6 layers, 8 query / 2 key-value heads, MLP 704, untied
head) trained from scratch by the teacher stage. Each plan: prune.method transformer (one shot, output_norm
importance, block_influence depth), no fine-tuning (prune.finetune.epochs 0), then the distill stage with the
pruned model as the student and the unpruned teacher's logits as its only target (alpha 1, temperature 1: the
forward KL Minitron trains with), for the same number of training tokens for every plan. The control: the
combined plan's final shape trained from scratch by the teacher stage on as many tokens. With --student-documents
the students and the scratch model train on a seeded sample of the teacher's training documents, tokenized by
the teacher's tokenizer (the same test and validation documents, checked block by block): a smaller, still
equal, token budget when the machine is slower than planned.

Every model is scored on the test documents (steps/compression/language.score_split: perplexity, bits per byte,
next-token accuracy), compared by a paired bootstrap over documents (steps/core/stats/likelihood), and timed at
batch 1 with the KV cache (steps/compression/generation.decode_latency), all models interleaved in rounds.

Goals: a half-size student within 1.15x the teacher's perplexity; prune-then-distill better than the same
tokens from scratch (the paired interval wholly above 0); width against depth (which, by how much).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

import common
import lm_assets
from common import merge

from steps import config, data, distill, prune, teacher
from steps.compression import generation, language
from steps.compression.training import seed_everything
from steps.core import datasets
from steps.core.dag import stage
from steps.core.layout import DATA_DIR
from steps.core.names import ModelRole
from steps.core.stats import likelihood
from steps.core.torchkit import load_model

TEACHER_SHAPE = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8,
                 "num_key_value_heads": 2, "intermediate_size": 704, "max_position_embeddings": 128,
                 "tie_word_embeddings": False}
QUICK_SHAPE = {**TEACHER_SHAPE, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
               "intermediate_size": 64}
AXES = ("heads", "mlp", "embedding", "depth")
PLANS = {  # name -> prune.transformer fractions, each to about half the teacher's non-embedding parameters.
    # Heads go by whole key-value group (2 here), so a head fraction is 0 or 0.5; depth 0.25 keeps round(4.5) = 4
    # of 6 layers (Python rounds half to even).
    "width": {"heads": 0.5, "mlp": 0.5, "embedding": 0.0, "depth": 0.0},
    "depth": {"heads": 0.0, "mlp": 0.0, "embedding": 0.0, "depth": 0.5},
    "combined": {"heads": 0.0, "mlp": 0.25, "embedding": 0.0625, "depth": 0.25},
}
SCRATCH = "combined shape, scratch"
SCRATCH_PLAN = "combined"
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "head_dim", "max_position_embeddings", "tie_word_embeddings")
TEACHER_SECTIONS = ("seed", "data", "teacher")
SCORING_BATCH = 16
LATENCY = {"prompt_len": 64, "new_tokens": 32, "repeats": 10, "warmup": 2, "rounds": 5}
QUICK_LATENCY = {"prompt_len": 8, "new_tokens": 8, "repeats": 2, "warmup": 1, "rounds": 2}
GOAL_RATIO = 1.15


def recipe(shape: dict = TEACHER_SHAPE) -> dict:
    """The params every project of the benchmark starts from (the data section replaced whole: params.yaml's is
    the image classifier's)."""
    return {
        "threads": 2,
        "teacher": {"arch": {"name": "hf", "config": dict(shape)},
                    "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.01,
                              "lr_schedule": "warmup_cosine"}},
        "prune": {"method": "transformer", "rounds": 1, "schedule": "one_shot", "round_to": 16,
                  "calibration_samples": 256,
                  "transformer": {**PLANS["combined"], "importance": "output_norm", "depth_metric": "block_influence"},
                  "finetune": {"epochs": 0, "batch_size": 16, "lr": 1e-4}},
        "distill": {"teacher": "teacher", "student": {"name": "pruned"}, "temperature": 1.0, "alpha": 1.0,
                    "train": {"epochs": 1, "batch_size": 16, "lr": 5e-4, "weight_decay": 0.01,
                              "lr_schedule": "warmup_cosine"}},
    }


def data_section(docs: Path) -> dict:
    return {"source": "text", "task": "causal_lm", "path": str(docs), "block_size": 128, "test_fraction": 0.2,
            "val_size": 25, "tokenizer": {"train": {"kind": "bpe", "vocab_size": 8000}}}


def quick(raw: dict) -> dict:
    """A few documents, short blocks, a tiny model, one epoch."""
    out = merge(raw, {"data": {"train_limit": 30, "test_limit": 10, "val_size": 5, "block_size": 32,
                               "tokenizer": {"train": {"vocab_size": 500}}},
                      "teacher": {"train": {"epochs": 1}}, "prune": {"round_to": 1, "calibration_samples": 16}})
    out["teacher"]["arch"]["config"] = dict(QUICK_SHAPE, max_position_embeddings=32)
    return out


def build_raw(args, docs: Path) -> dict:
    """params.yaml with the recipe and its data section, then --recipe, --quick and -S (common.params' order)."""
    return common.params(args, quick, recipe(), data=data_section(docs))


def plan_raw(raw: dict, fractions: dict) -> dict:
    return merge(raw, {"prune": {"transformer": fractions}})


def scratch_raw(raw: dict, shape: dict) -> dict:
    """The teacher recipe for `shape`, trained for as many epochs as a pruned model is distilled (the same
    tokens: every model sees the same training blocks)."""
    out = merge(raw, {"teacher": {"train": {"epochs": raw["distill"]["train"]["epochs"]}}})
    out["teacher"]["arch"]["config"] = dict(shape)
    return out


def validated(raw: dict, name: str) -> config.Params:
    return config.validate(raw, stage=name)


def _project(work: Path, name: str, raw: dict, data_from: Path | None, teacher_from: Path | None = None) -> Path:
    """`work/name` with its params.yaml; the data of `data_from` and the teacher of `teacher_from` linked in."""
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    links = [(DATA_DIR, data_from)] if data_from is not None else []
    if teacher_from is not None:
        links += [(rel, teacher_from) for rel in stage("teacher").outputs(validated(raw, "teacher"))]
    for rel, source in links:
        if not (root / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to((source / rel).resolve())
    return root


def student_raw(raw: dict, base: Path, documents: int) -> dict:
    """The students' data: the first `documents` of the teacher's training documents (a seeded sample), tokenized
    by the teacher's tokenizer, so the token ids, the validation and the test documents are the teacher's."""
    out = merge(raw, {"data": {"train_limit": documents}})
    out["data"]["tokenizer"] = {"path": str((base / DATA_DIR / "tokenizer.json").resolve())}
    return out


def student_data(work: Path, raw: dict, base: Path, documents: int | None) -> tuple[dict, Path]:
    """(the students' params, the project whose data they train on): the teacher's, or `documents` of its training
    documents (--student-documents), refused unless the test blocks are the teacher's to the token."""
    if documents is None:
        return raw, base
    own = student_raw(raw, base, documents)
    root = _project(work, "student-data", own, None)
    data.run(validated(own, "data"), root)
    for split in ("test", "val"):
        ours = datasets.load_blocks(root, split, datasets.read_manifest(root))["input_ids"]
        theirs = datasets.load_blocks(base, split, datasets.read_manifest(base))["input_ids"]
        if not np.array_equal(ours, theirs):
            raise ValueError(f"--student-documents: the students' {split} blocks differ from the teacher's")
    return own, root


def _trained_teacher(base: Path, raw: dict) -> bool:
    """Whether `base` holds a teacher an earlier run (--work) trained with the same seed, data and teacher params."""
    previous = base / "params.yaml"
    if not (base / "metrics/teacher.json").exists() or not previous.exists():
        return False
    old = validated(yaml.safe_load(previous.read_text()), "teacher")
    return old.section_hash(*TEACHER_SECTIONS) == validated(raw, "teacher").section_hash(*TEACHER_SECTIONS)


def _timed(module, raw: dict, name: str, root: Path) -> float:
    start = time.perf_counter()
    module.run(validated(raw, name), root)
    return time.perf_counter() - start


TEACHER_SECONDS = "benchmark-teacher-seconds.json"
"""Beside a --work teacher: how long it trained, so a rerun that reuses it still reports it."""


def train_models(work: Path, raw: dict, student_documents: int | None = None
                 ) -> tuple[dict[str, tuple[Path, ModelRole]], dict[str, float], dict]:
    """({row: (project, role)}, {row: training seconds}, {row: training tokens}). Rows: the teacher, each plan
    pruned and pruned+KD, and the combined shape from scratch; the students and the scratch model train on
    the same blocks for the same epochs."""
    reused = _trained_teacher(work / "base", raw)
    base = _project(work, "base", raw, None)
    seconds = {}
    if reused:
        recorded = base / TEACHER_SECONDS
        seconds["teacher"] = json.loads(recorded.read_text())["seconds"] if recorded.is_file() else None
    else:
        data.run(validated(raw, "data"), base)
        seconds["teacher"] = _timed(teacher, raw, "teacher", base)
        (base / TEACHER_SECONDS).write_text(json.dumps({"seconds": seconds["teacher"]}))
    tokens = {"teacher": _epoch_tokens(base) * raw["teacher"]["train"]["epochs"]}
    models = {"teacher": (base, ModelRole.TEACHER)}
    students, data_root = student_data(work, raw, base, student_documents)
    epoch_tokens = _epoch_tokens(data_root)
    for plan, fractions in PLANS.items():
        plan_params = plan_raw(students, fractions)
        root = _project(work, plan, plan_params, data_root, base)
        seconds[f"{plan} pruned"] = _timed(prune, plan_params, "prune", root)
        seconds[f"{plan} pruned+KD"] = seconds[f"{plan} pruned"] + _timed(distill, plan_params, "distill", root)
        models[f"{plan} pruned"] = (root, ModelRole.PRUNED)
        models[f"{plan} pruned+KD"] = (root, ModelRole.STUDENT)
        tokens[f"{plan} pruned"] = 0
        tokens[f"{plan} pruned+KD"] = epoch_tokens * students["distill"]["train"]["epochs"]
    shape = shape_of(load_model(*models[f"{SCRATCH_PLAN} pruned"])[0].hf)
    own = scratch_raw(students, shape)
    root = _project(work, "scratch", own, data_root)
    seconds[SCRATCH] = _timed(teacher, own, "teacher", root)
    models[SCRATCH] = (root, ModelRole.TEACHER)
    tokens[SCRATCH] = epoch_tokens * own["teacher"]["train"]["epochs"]
    return models, seconds, tokens


def _epoch_tokens(root: Path) -> int:
    manifest = datasets.read_manifest(root)
    return manifest["files"]["train.npz"]["rows"] * manifest["block_size"]


def shape_of(hf) -> dict:
    """The config keys of a (pruned) model's shape, as teacher.arch.config takes them."""
    return {key: getattr(hf.config, key) for key in SHAPE_KEYS if getattr(hf.config, key, None) is not None}


def counts(hf) -> dict[str, int]:
    """Total parameters, and those outside the token embedding and the output head (the tables a vocabulary,
    not the model's depth or width, sizes)."""
    total = sum(p.numel() for p in hf.parameters())
    tables = sum(p.numel() for n, p in hf.named_parameters() if n.startswith(("model.embed_tokens.", "lm_head.")))
    return {"parameters": total, "non_embedding": total - tables}


def score(models: dict, base: Path) -> tuple[dict, dict, list[int]]:
    """({row: metrics, shape, counts}, {row: per-document log-likelihood sums}, per-document tokens)."""
    blocks = datasets.load_blocks(base, "test", datasets.read_manifest(base))
    rows, documents, tokens = {}, {}, []
    for name, (root, role) in models.items():
        hf = load_model(root, role)[0].hf.eval()
        scores = language.score_split(hf, blocks, SCORING_BATCH)
        rows[name] = {**scores.metrics, **counts(hf), "shape": shape_of(hf)}
        documents[name] = scores.document_ll.tolist()
        tokens = scores.document_tokens.tolist()
        print(f"scored {name}: perplexity {scores.metrics['perplexity']:.2f}", flush=True)
    return rows, documents, tokens


def latencies(models: dict, settings: dict) -> dict[str, dict]:
    """Decode ms/token and prefill ms at batch 1 with the KV cache, every model timed once per round, the order
    rotated each round, so the machine's drift falls on all of them alike: the median of the rounds' p50s."""
    loaded = {name: load_model(root, role)[0].hf.eval() for name, (root, role) in models.items()}
    names, per = list(loaded), {name: {"decode": [], "prefill": []} for name in loaded}
    for r in range(settings["rounds"]):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = generation.decode_latency(loaded[name], settings["prompt_len"], settings["new_tokens"],
                                          repeats=settings["repeats"], warmup=settings["warmup"])
            per[name]["decode"].append(t["decode_ms_per_token"])
            per[name]["prefill"].append(t["prefill_ms"])
    return {name: {"decode_ms_per_token": statistics.median(v["decode"]), "decode_rounds": v["decode"],
                   "prefill_ms": statistics.median(v["prefill"]), **{k: settings[k] for k in settings}}
            for name, v in per.items()}


def compare(documents: dict, tokens: list[int], reference: str, candidate: str, seed: int = 0) -> dict:
    """candidate - reference, nats per token, by a paired bootstrap over test documents; and the perplexity
    ratio candidate / reference with its interval (below 1: the candidate is better)."""
    difference = likelihood.paired_document_bootstrap(
        np.asarray(documents[reference]), np.asarray(documents[candidate]), np.asarray(tokens), seed=seed)
    ratio = likelihood.perplexity_ratio(difference)
    return {"reference": reference, "candidate": candidate, "nats_per_token": difference.estimate,
            "low": difference.low, "high": difference.high, "perplexity_ratio": ratio.estimate,
            "perplexity_ratio_low": ratio.low, "perplexity_ratio_high": ratio.high}


def comparisons(rows: dict, documents: dict, tokens: list[int]) -> dict:
    """Every other model against the teacher; the best prune+distill student and the combined one against the
    combined shape from scratch; width against depth (both distilled)."""
    out = {f"{name} vs teacher": compare(documents, tokens, "teacher", name) for name in rows if name != "teacher"}
    best = best_student(rows)
    out["best KD vs scratch"] = compare(documents, tokens, SCRATCH, best)
    out["combined KD vs scratch"] = compare(documents, tokens, SCRATCH, f"{SCRATCH_PLAN} pruned+KD")
    out["width KD vs depth KD"] = compare(documents, tokens, "depth pruned+KD", "width pruned+KD")
    return out


def best_student(rows: dict) -> str:
    return min((n for n in rows if n.endswith("pruned+KD")), key=lambda n: rows[n]["perplexity"])


def goals(result: dict) -> dict:
    rows, c = result["rows"], result["comparisons"]
    best = best_student(rows)
    ratio = c[f"{best} vs teacher"]
    width, depth = rows["width pruned+KD"]["perplexity"], rows["depth pruned+KD"]["perplexity"]
    wd = c["width KD vs depth KD"]
    better = "width" if width < depth else "depth"
    return {"best_student": best, "ratio": ratio["perplexity_ratio"], "ratio_high": ratio["perplexity_ratio_high"],
            "within_goal": ratio["perplexity_ratio"] <= GOAL_RATIO,
            "within_goal_interval": ratio["perplexity_ratio_high"] <= GOAL_RATIO,
            "kd_beats_scratch": c["best KD vs scratch"]["low"] > 0,
            "combined_kd_beats_scratch": c["combined KD vs scratch"]["low"] > 0,
            "width_vs_depth": {"better": better, "perplexity_ratio": wd["perplexity_ratio"],
                               "low": wd["perplexity_ratio_low"], "high": wd["perplexity_ratio_high"],
                               "settled": wd["low"] > 0 or wd["high"] < 0}}


def _shape(s: dict) -> str:
    return (f"{s['num_hidden_layers']} | {s['num_attention_heads']}/{s['num_key_value_heads']} | "
            f"{s['intermediate_size']} | {s['hidden_size']}")


def _row(name: str, row: dict, teacher: dict, comparison: dict | None, latency: dict | None) -> str:
    ratio = (f"{comparison['perplexity_ratio']:.3f} [{comparison['perplexity_ratio_low']:.3f}, "
             f"{comparison['perplexity_ratio_high']:.3f}]") if comparison else "1"
    minutes = f"{row['train_s'] / 60:.1f}" if row.get("train_s") else ""
    decode = speed = ""
    if latency:
        decode = f"{latency['decode_ms_per_token']:.2f}"
        speed = f"{teacher['latency']['decode_ms_per_token'] / latency['decode_ms_per_token']:.2f}x"
    return (f"| {name} | {_shape(row['shape'])} | {row['parameters'] / 1e6:.2f} | "
            f"{row['non_embedding'] / 1e6:.2f} ({row['non_embedding'] / teacher['non_embedding']:.0%}) | "
            f"{row['train_tokens'] / 1e6:.2f} | {minutes} | {row['perplexity']:.2f} | {ratio} | "
            f"{row['bits_per_byte']:.3f} | {row['next_token_accuracy']:.2%} | {decode} | {speed} |")


def table(result: dict) -> str:
    rows, c, g = result["rows"], result["comparisons"], result["goals"]
    teacher = rows["teacher"]
    lines = ["| model | layers | heads/kv | MLP | hidden | params M | non-emb. M (of teacher) | train tokens M | "
             "train min | test ppl | ppl / teacher [95%] | bits/byte | next-token acc. | decode ms/token | "
             "speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(n, r, teacher, c.get(f"{n} vs teacher"), r.get("latency")) for n, r in rows.items()]
    ok = lambda met: "met" if met else "NOT met"  # noqa: E731
    b = c["best KD vs scratch"]
    cs = c["combined KD vs scratch"]
    wd = g["width_vs_depth"]
    lines += ["",
              f"- a half-size student within {GOAL_RATIO}x the teacher's perplexity: {ok(g['within_goal'])} (best: "
              f"{g['best_student']}, {g['ratio']:.3f}x, 95% interval up to {g['ratio_high']:.3f}x: "
              f"{'inside' if g['within_goal_interval'] else 'not wholly inside'} the goal)",
              f"- prune+distill better than scratch at equal tokens: {ok(g['kd_beats_scratch'])} ({b['candidate']} vs "
              f"{SCRATCH}: {b['nats_per_token']:+.4f} nats/token [{b['low']:+.4f}, {b['high']:+.4f}], perplexity "
              f"ratio {b['perplexity_ratio']:.3f}); the same shape, {cs['candidate']}: {cs['nats_per_token']:+.4f} "
              f"[{cs['low']:+.4f}, {cs['high']:+.4f}] ({ok(g['combined_kd_beats_scratch'])})",
              f"- width vs depth (both distilled): {wd['better']} is better; width/depth perplexity "
              f"{wd['perplexity_ratio']:.3f} [{wd['low']:.3f}, {wd['high']:.3f}] "
              f"({'the interval excludes 1' if wd['settled'] else 'the interval includes 1: not settled'})"]
    return "\n".join(lines) + "\n"


def run(work: Path, raw: dict, latency_settings: dict, student_documents: int | None = None) -> dict:
    seed_everything(raw["seed"], raw["threads"])
    models, seconds, tokens = train_models(work, raw, student_documents)
    base = models["teacher"][0]
    rows, documents, doc_tokens = score(models, base)
    timed = latencies(models, latency_settings)
    for name, row in rows.items():
        row.update(train_s=seconds.get(name), train_tokens=tokens[name], latency=timed[name])
    manifest = datasets.read_manifest(base)
    result = {"rows": rows, "comparisons": comparisons(rows, documents, doc_tokens),
              "documents": {**documents, "tokens": doc_tokens},
              "data": {"train_blocks": manifest["files"]["train.npz"]["rows"],
                       "test_blocks": manifest["files"]["test.npz"]["rows"], "documents": manifest["documents"],
                       "block_size": manifest["block_size"],
                       "student_train_blocks": datasets.read_manifest(models[SCRATCH][0])["files"]["train.npz"]["rows"],
                       "student_documents": student_documents}}
    return {**result, "goals": goals(result)}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--work", type=Path, help="keep the project folders here (a rerun reuses the teacher)")
    parser.add_argument("--student-documents", type=int, help="train the students and the scratch model on only this "
                        "many of the teacher's training documents (its tokenizer, the same test documents): a "
                        "smaller token budget when time is short")
    parser.add_argument("--cache", type=Path, default=lm_assets.CACHE, help="where the Brown corpus is cached")
    args = parser.parse_args()
    docs = Path(args.data_path) if args.data_path else lm_assets.brown(args.cache)[0]
    raw = build_raw(args, docs)
    settings = QUICK_LATENCY if args.quick else LATENCY
    start = time.perf_counter()
    result = run(args.work, raw, settings, args.student_documents) if args.work else \
        common.in_scratch("shrinkflow-minitron-", lambda w, r: run(w, r, settings, args.student_documents), raw)
    result["wall_s"] = time.perf_counter() - start
    common.report(args, "lm-minitron", "Minitron at small scale (Llama on Brown)", table(result), result,
                  note=f"transformers {common.version('transformers')}, {result['wall_s'] / 60:.1f} min wall; "
                       f"teacher {raw['teacher']['train']['epochs']} epoch(s), students "
                       f"{raw['distill']['train']['epochs']} epoch(s) of "
                       f"{result['data']['student_train_blocks']} training blocks "
                       f"({args.student_documents or 'all'} training documents).",
                  threads=raw["threads"], wall_s=result["wall_s"], params=raw)


if __name__ == "__main__":
    main()
