"""Scaling benchmark (issue 28): a language-model student distilled on 1 CPU process, on 2 with DDP and on 2 with
FSDP (torchrun, gloo).

    .venv/bin/python benchmarks/scale.py                   # the full run (estimated 8-13 minutes on 2 quiet cores)
    .venv/bin/python benchmarks/scale.py --documents 60    # fewer training documents, a shorter run
    .venv/bin/python benchmarks/scale.py --quick           # 8 documents and a tiny model: does it run (~1.5 min)

The estimate: 120 Brown documents are about 320k tokens an epoch; one teacher epoch and two distillation epochs
on each of the three settings at 5-10k tokens/s (the teacher's shape trained at 4.4k tokens/s on one thread of a
loaded machine), plus about a minute and a half of process starts and MLflow stores.

Everything runs through the pipeline's own stages (data, teacher, distill) in scratch project folders. The data:
the Brown corpus (benchmarks/lm_assets.py), split by document as the data stage splits it (test_fraction 0.2,
--val-documents held out for validation), a seeded sample of --documents training documents
(data.train_limit), a byte-level BPE of 4,000 tokens trained on them, blocks of 128 tokens. The teacher: a Llama
(hidden 128, 4 layers, 4 query / 2 key-value heads, MLP 352, untied head) trained for one epoch in one process.
The student: a new Llama of the teacher's width at half its depth (2 layers), distilled by the distill stage from
the teacher's logits alone (alpha 1, temperature 1: the forward KL Minitron trains with; the teacher runs on
every batch, as it does for every language model) for --epochs epochs, once per setting (SETTINGS): one process
(resources.processes 1: no strategy runs), two processes with resources.strategy ddp (each rank a whole replica,
gradients all-reduced), two with fsdp (each rank a shard of the weights, gradients and AdamW moments, torch's
fully_shard; the shards gathered into the plain model after each epoch, inside the epoch's time). Each setting
is its own project linked to the same data and teacher; the same seed, global batch and learning rate, so the
three should reach the same losses (their per-epoch train losses are in the table; rows are keyed by the
setting's label).

Threads: the cores are shared out, never oversubscribed: --cores threads in all (params' `threads` per
process: 2 for one process, 1 for each of two on 2 cores). That is the fair comparison on one machine: what
two processes gain (or lose) against one process with every core, not against one process on one core. Run it on
quiet cores: beside other work, one process's 2 intra-op threads wait on each other at every op, and the
quick run on a loaded machine showed 2 processes "superlinear" for that reason alone.

Tokens per second are global (both ranks together): the training tokens of an epoch (training blocks x block
size) over the steady epoch's seconds, measured between the MLflow timestamps of consecutive epochs' metrics
(epochs after the first: the first holds DDP's or FSDP's start and the first allocations). An epoch's seconds
include its validation (--val-documents documents, forward only: about 1% of an epoch; the ranks split it, where
the README's first measurement had rank 0 score it alone). The stage's wall time (process and torchrun start,
imports, loading the teacher, writing the checkpoint) is reported beside. Scaling efficiency: a setting's
tokens/s / (its processes x the 1-process tokens/s).

Peak memory: each setting's distill stage runs in a fresh child process of this one (the clock starts after it has
imported the stage, transformers and MLflow, as this process had after training the teacher), which reports its
kernel-kept peak resident set (getrusage's ru_maxrss): on one process its own, the rank; on two, the largest
of its waited-for descendants (RUSAGE_CHILDREN: torchrun and its ranks; the Linux kernel keeps the maximum, not a
sum), the larger rank. No sampling, so no peak is missed; but it is the largest rank's, not each rank's or their
sum, and RSS counts every process's own copy of torch's libraries, the data and the teacher, so on this small a
student the model's own training state (the protocol's student parameters: DDP 4x their fp32 bytes per rank,
FSDP 1x + 4x/2) is a small part of it. Perplexity: the student's on the validation blocks after the last epoch
(the distill stage's val_perplexity).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import yaml

import common
import lm_assets
from common import merge

from steps import config
from steps.core.dag import stage
from steps.core.layout import DATA_DIR

TEACHER_SHAPE = {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "intermediate_size": 352, "max_position_embeddings": 128,
                 "tie_word_embeddings": False}
STUDENT_SHAPE = {**TEACHER_SHAPE, "num_hidden_layers": 2}
QUICK_TEACHER = {**TEACHER_SHAPE, "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
                 "max_position_embeddings": 32}
QUICK_STUDENT = {**QUICK_TEACHER, "num_hidden_layers": 1}
DOCUMENTS, QUICK_DOCUMENTS = 120, 8
EPOCHS = 2
VAL_DOCUMENTS = 5


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way of distilling the student: `label` keys its row and names its project folder and MLflow experiment;
    `strategy` is resources.strategy (None on one process, where none runs)."""

    label: str
    processes: int
    strategy: str | None = None


SETTINGS = (Setting("1-process", 1), Setting("2-ddp", 2, "ddp"), Setting("2-fsdp", 2, "fsdp"))


def recipe(docs: Path, documents: int, val_documents: int, epochs: int) -> dict:
    """The params every project of the benchmark starts from (the data section replaced whole: params.yaml's is
    the image classifier's)."""
    return {
        "data": {"source": "text", "task": "causal_lm", "path": str(docs), "block_size": 128, "test_fraction": 0.2,
                 "val_size": val_documents, "train_limit": documents, "test_limit": 1,
                 "tokenizer": {"train": {"kind": "bpe", "vocab_size": 4000}}},
        "teacher": {"arch": {"name": "hf", "config": dict(TEACHER_SHAPE)},
                    "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.01,
                              "lr_schedule": "warmup_cosine"}},
        "distill": {"teacher": "teacher", "student": {"name": "hf", "config": dict(STUDENT_SHAPE)},
                    "temperature": 1.0, "alpha": 1.0,
                    "train": {"epochs": epochs, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.01,
                              "lr_schedule": "warmup_cosine"}},
    }


def quick(raw: dict) -> dict:
    """A few documents, short blocks, a small vocabulary, a tiny teacher and student (every setting still runs:
    --quick checks that each of them distils end to end)."""
    out = merge(raw, {"data": {"block_size": 32, "val_size": 2, "tokenizer": {"train": {"vocab_size": 500}}}})
    out["teacher"]["arch"]["config"] = dict(QUICK_TEACHER)
    out["distill"]["student"]["config"] = dict(QUICK_STUDENT)
    return out


def build_raw(args, docs: Path) -> dict:
    """params.yaml with the recipe, then --recipe, --quick and -S (common.params' order)."""
    own = recipe(docs, args.documents, args.val_documents, args.epochs)
    return common.params(args, quick, own, data=own["data"])


def threads_per_process(cores: int, processes: int) -> int:
    """The threads each of `processes` gets so that all of them together use `cores` threads."""
    if cores < processes or cores % processes:
        raise ValueError(f"--cores {cores} cannot be shared evenly by {processes} processes: give a multiple of "
                         f"{processes}")
    return cores // processes


def with_resources(raw: dict, setting: Setting, cores: int) -> dict:
    """`raw` distilling as `setting` says with `cores` threads in all; logged to its own experiment."""
    resources = {"processes": setting.processes}
    if setting.strategy is not None:
        resources["strategy"] = setting.strategy
    out = merge(raw, {"threads": threads_per_process(cores, setting.processes), "resources": resources})
    out["tracking"]["experiment"] = f"scale-{setting.label}"
    return out


def steady_epoch_seconds(timestamps_ms: list[int]) -> float:
    """The mean seconds of an epoch after the first, from the timestamps (ms) at which each epoch's metrics were
    logged, in epoch order; refused with fewer than two epochs (nothing steady to measure)."""
    if len(timestamps_ms) < 2:
        raise ValueError(f"{len(timestamps_ms)} epoch(s) logged: the steady epoch needs at least 2 (--epochs)")
    if any(b <= a for a, b in zip(timestamps_ms, timestamps_ms[1:], strict=False)):
        raise ValueError(f"epoch timestamps not increasing: {timestamps_ms}")
    return (timestamps_ms[-1] - timestamps_ms[0]) / 1000 / (len(timestamps_ms) - 1)


def efficiency(measured: dict[str, tuple[int, float]]) -> dict[str, float]:
    """{label: (processes, tokens/s)} -> {label: tokens/s / (processes x the one-process setting's tokens/s)}: 1 is
    perfect scaling. The one-process setting is the baseline; refused unless there is exactly one."""
    ones = [tps for processes, tps in measured.values() if processes == 1]
    if len(ones) != 1:
        raise ValueError(f"{len(ones)} one-process settings in {sorted(measured)}: scaling efficiency needs exactly "
                         "one as its baseline")
    return {label: tps / (processes * ones[0]) for label, (processes, tps) in measured.items()}


def peak_rank_mib(processes: int, self_maxrss: int, children_maxrss: int) -> float:
    """The peak resident set (MiB) of the largest rank, from the ru_maxrss of the process that ran the stage
    (`self_maxrss`: on one process it is the rank) and of its descendants (`children_maxrss`: torchrun's ranks
    when it started them; the kernel keeps their maximum). ru_maxrss is KiB on Linux, bytes on macOS."""
    maxrss = self_maxrss if processes == 1 else children_maxrss
    return maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20


def _distill_apart(raw: dict, root: Path, user_uri: str | None) -> dict:
    """The distill stage of `root` (params `raw`) in this fresh process: its run id, parameters, wall seconds
    and peak resident sets. MLFLOW_TRACKING_URI is first set back to the user's choice (`user_uri`, None for each
    project's own store): the benchmark's process had MLflow write its last project's store there, which this
    process would otherwise record into (launch.py clears it for its ranks alike). The stage's modules,
    transformers and MLflow are imported before the clock starts, as the benchmark's process had them after the
    teacher."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if user_uri:
        os.environ["MLFLOW_TRACKING_URI"] = user_uri
    import transformers  # noqa: F401  (the student's family: imported lazily by the stage otherwise)

    from steps import distill, tracking  # noqa: F401

    params = config.validate(raw, stage="distill")
    start = time.perf_counter()
    result = distill.run(params, root)
    wall_s = time.perf_counter() - start
    return {"run_id": result.mlflow_run_id, "parameters": result.parameters, "wall_s": wall_s,
            "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


def distill_in_child(raw: dict, root: Path) -> dict:
    """_distill_apart in a new process (spawned: nothing of this one's memory, so its peak is the stage's own)."""
    from steps import tracking

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_distill_apart, raw, root, tracking.user_uri()).result()


def _history(root: Path, run_id: str, metric: str) -> list:
    """A run's metric in `root`'s MLflow store, epoch by epoch (MLflow imported here: the pure functions above
    load without it)."""
    from mlflow.tracking import MlflowClient

    from steps import tracking

    tracking.use_store(root)
    return sorted(MlflowClient().get_metric_history(run_id, metric), key=lambda m: m.step)


def measured_row(root: Path, ran: dict, epoch_tokens: int, setting: Setting, threads: int) -> dict:
    """One row from the distill run's MLflow metrics (recorded into `root`'s store) and `ran` (distill_in_child)."""
    losses = _history(root, ran["run_id"], "train_loss")
    perplexity = _history(root, ran["run_id"], "val_perplexity")
    epoch_s = steady_epoch_seconds([m.timestamp for m in losses])
    return {"label": setting.label, "processes": setting.processes, "strategy": setting.strategy,
            "threads_per_process": threads, "epoch_tokens": epoch_tokens, "steady_epoch_s": epoch_s,
            "tokens_per_s": epoch_tokens / epoch_s, "stage_wall_s": ran["wall_s"],
            "peak_rss_mib": peak_rank_mib(setting.processes, ran["self_maxrss"], ran["children_maxrss"]),
            "train_loss": [m.value for m in losses], "val_perplexity": perplexity[-1].value,
            "val_perplexity_per_epoch": [m.value for m in perplexity]}


def _project(work: Path, name: str, raw: dict, seed_from: Path | None) -> Path:
    """`work/name` with its params.yaml; the data and the teacher of `seed_from` linked in."""
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    if seed_from is not None:
        for rel in (DATA_DIR, *stage("teacher").outputs(config.validate(raw, stage="teacher"))):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to((seed_from / rel).resolve())
    return root


def run_benchmark(work: Path, raw: dict, cores: int) -> dict:
    """The teacher once (one process, every core), then the student distilled as each of SETTINGS says."""
    from steps import data, teacher
    from steps.core import datasets

    base = _project(work, "base", merge(raw, {"threads": cores}), None)
    data.run(config.validate(merge(raw, {"threads": cores}), stage="data"), base)
    start = time.perf_counter()
    taught = teacher.run(config.validate(merge(raw, {"threads": cores}), stage="teacher"), base)
    teacher_s = time.perf_counter() - start
    manifest = datasets.read_manifest(base)
    blocks = manifest["files"]["train.npz"]["rows"]
    epoch_tokens = blocks * raw["data"]["block_size"]
    rows, parameters = {}, None
    for setting in SETTINGS:
        own = with_resources(raw, setting, cores)
        root = _project(work, setting.label, own, base)
        ran = distill_in_child(own, root)
        parameters = ran["parameters"]
        row = rows[setting.label] = measured_row(root, ran, epoch_tokens, setting, own["threads"])
        print(f"{setting.label}: {row['tokens_per_s']:.0f} tokens/s, perplexity {row['val_perplexity']:.2f}, "
              f"{row['stage_wall_s']:.0f} s stage wall, peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    scaling = efficiency({label: (r["processes"], r["tokens_per_s"]) for label, r in rows.items()})
    return {"rows": {label: {**r, "efficiency": scaling[label]} for label, r in rows.items()},
            "protocol": {"train_blocks": blocks, "block_size": raw["data"]["block_size"],
                         "vocabulary": manifest["tokenizer"]["vocab_size"], "documents": manifest["documents"],
                         "teacher_s": teacher_s,
                         "teacher_val_perplexity": _teacher_perplexity(base, taught.mlflow_run_id),
                         "teacher_parameters": taught.parameters, "student_parameters": parameters,
                         "cores": cores, "teacher": raw["teacher"]["arch"]["config"],
                         "student": raw["distill"]["student"]["config"]}}


def _teacher_perplexity(root: Path, run_id: str) -> float | None:
    history = _history(root, run_id, "val_perplexity")
    return history[-1].value if history else None


def table(result: dict) -> str:
    lines = ["| setting | processes | strategy | threads each | tokens/s (global) | scaling efficiency | "
             "steady epoch s | stage wall s | peak RSS MiB (largest rank) | train loss per epoch | "
             "final val perplexity |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in result["rows"].items():
        losses = ", ".join(f"{x:.4f}" for x in r["train_loss"])
        lines.append(f"| {label} | {r['processes']} | {r['strategy'] or 'none'} | {r['threads_per_process']} | "
                     f"{r['tokens_per_s']:.0f} | {r['efficiency']:.2f} | {r['steady_epoch_s']:.1f} | "
                     f"{r['stage_wall_s']:.1f} | {r['peak_rss_mib']:.0f} | {losses} | {r['val_perplexity']:.2f} |")
    p = result["protocol"]
    teacher_ppl = p["teacher_val_perplexity"]
    lines += ["", f"- {p['train_blocks']} training blocks of {p['block_size']} tokens an epoch; teacher trained "
              f"in {p['teacher_s']:.0f} s (one process, {p['cores']} threads)"
              + (f", validation perplexity {teacher_ppl:.2f}" if teacher_ppl is not None else "") + "."]
    if p.get("student_parameters"):
        mib = p["student_parameters"] * 4 / 2**20
        lines.append(f"- Student {p['student_parameters']:,} parameters ({mib:.1f} MiB in fp32): training state per "
                     f"rank about {4 * mib:.1f} MiB with DDP, {3 * mib:.1f} MiB with FSDP on 2 ranks; the rest of "
                     "the peak RSS is torch's libraries, the data and the teacher, in every process.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--documents", type=int, help=f"training documents, a seeded sample (default {DOCUMENTS}; "
                        f"--quick {QUICK_DOCUMENTS})")
    parser.add_argument("--val-documents", type=int, default=VAL_DOCUMENTS,
                        help="documents held out for validation (the perplexity)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="distillation epochs (at least 2: the first "
                        "is not timed)")
    parser.add_argument("--cores", type=int, default=2, help="threads in all, shared out among the processes")
    parser.add_argument("--cache", type=Path, default=lm_assets.CACHE, help="where lm_assets keeps Brown")
    parser.add_argument("--work", type=Path, help="keep the project folders here (an empty folder)")
    args = parser.parse_args()
    args.documents = args.documents or (QUICK_DOCUMENTS if args.quick else DOCUMENTS)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is not timed")
    for setting in SETTINGS:
        threads_per_process(args.cores, setting.processes)  # refused before anything runs
    corpus = Path(args.data_path) if args.data_path else lm_assets.brown(args.cache)[0]
    raw = build_raw(args, corpus)
    start = time.perf_counter()
    if args.work:
        result = run_benchmark(args.work, raw, args.cores)
    else:
        result = common.in_scratch("shrinkflow-scale-", lambda work, raw: run_benchmark(work, raw, args.cores), raw)
    result["wall_s"] = time.perf_counter() - start
    common.report(args, "scale", "Scaling benchmark: LM distillation on 1 CPU process and on 2 with DDP and with FSDP "
                  "(torchrun, gloo)", table(result), result,
                  note=f"Brown, {args.documents} training documents, {args.epochs} distillation epochs; "
                       f"{args.cores} threads in all (2 processes x 1 thread vs 1 process x 2 threads); "
                       f"transformers {common.version('transformers')}, {result['wall_s'] / 60:.1f} min wall.",
                  threads=args.cores, documents=args.documents, epochs=args.epochs, wall_s=result["wall_s"],
                  settings=[dataclasses.asdict(s) for s in SETTINGS], params=raw)


if __name__ == "__main__":
    main()
