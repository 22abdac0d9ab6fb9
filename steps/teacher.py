"""Teacher step: train the large model that the others are compressed from, or start from a trained one.

`teacher.init.from` names a trained model: a registered version (models:/NAME@alias,
models:/NAME/VERSION; its `model_files/` safetensors + spec, or an hf model's save_pretrained folder,
checked against the version's sha256 tag) or a safetensors checkpoint with its .json spec beside it. It is loaded without
pickle (checkpoint.load), must fit the data (the manifest's input shape and class count, checked
on real samples), and `teacher.train.epochs` more epochs run on top of it (0: kept as it is, so a
team compresses its production model without retraining it). The result records the model's
URI and sha256; promote puts them on the registered version and the audit re-checks them.

On text data (`data.source: text`) the teacher is an hf model (families/hf): the same loop trains it on the
splits' input_ids and attention_mask, and its checkpoint is the folder `models/teacher/` that stock
`transformers` reloads, the data's tokenizer.json beside it (torchkit.save_model asks the family).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from steps import config, tracking
from steps.compression import measure, parallel
from steps.compression.families import CHECKPOINT_RECORD, checkpoint, family
from steps.compression.regularization import near_zero_fraction
from steps.compression.training import accuracy, adam, numpy_rows, train_epochs, validation_scores
from steps.core import datasets, launch, lineage
from steps.core.hashing import sha256, weights_sha256
from steps.core.names import ModelRole
from steps.core.results import TeacherResult
from steps.core.torchkit import build_for, check_outputs, project_importable, regularised_loss, setup, spec_from
from steps.sources import tokens
from steps.stagekit.finish import save_and_record, write_result
from steps.stagekit.ranks import on_ranks, stage_run


class InitError(ValueError):
    """teacher.init names a model that cannot be found, loaded or used on this data; names it."""


def resolve_init(source: str, root: Path, scratch: Path) -> tuple[str, Path]:
    """(the exact URI or path the weights came from, the local safetensors file, or for a registered hf model
    its save_pretrained folder)."""
    if source.startswith("models:/"):
        tracking.use_store(root)  # the project's registry, before the stage's run opens (which also points there)
        try:
            version, weights = tracking.download_model_files(source, scratch)
        except (ValueError, LookupError) as err:
            raise InitError(f"teacher.init.from {source!r}: {err}") from None
        return f"models:/{tracking.ModelRef.parse(source).name}/{version}", weights
    weights = Path(source) if Path(source).is_absolute() else root / source
    for path in (weights, weights.with_suffix(".json")):
        if not path.is_file():
            raise InitError(f"teacher.init.from {source!r}: {path} does not exist (a checkpoint is a .safetensors "
                            "file with its .json spec beside it)")
    return source, weights


def load_init(cfg: config.TeacherConfig, root: Path, example, scratch: Path):
    """(model, its spec, URI, sha256) of teacher.init, refused unless it fits the data."""
    uri, path = resolve_init(cfg.init.source, root, scratch)
    with project_importable(root):
        try:
            model, spec = _load_checkpoint(path)
        except (ValueError, FileNotFoundError) as err:
            raise InitError(f"teacher.init.from {cfg.init.source!r}: {err}") from None
    if spec.name != cfg.arch.name:
        raise InitError(f"teacher.init.from {cfg.init.source!r} is a {spec.name!r} model but teacher.arch.name is "
                        f"{cfg.arch.name!r}: set teacher.arch to the model's architecture")
    wanted = spec_from(cfg.arch, root)
    try:
        check_outputs(model, wanted, example)
    except ValueError as err:
        raise InitError(f"teacher.init.from {cfg.init.source!r} does not fit this data: {err}") from None
    if path.is_dir():
        _same_tokenizer(cfg.init.source, path, root)
    return model, spec, uri, weights_sha256(path)


def _load_checkpoint(path: Path):
    """A .safetensors file with its .json spec, or a family's checkpoint folder (hf), with its spec."""
    if path.is_dir():
        return family(json.loads((path / CHECKPOINT_RECORD).read_text())["spec"]["name"]).load_checkpoint(path)
    return checkpoint.load(path, path.with_suffix(".json"))


def _same_tokenizer(source: str, folder: Path, root: Path) -> None:
    """A registered hf model reads token ids of the tokenizer it was trained with: the data's must be that one."""
    theirs, ours = folder / tokens.FILE, datasets.tokenizer_file(root, datasets.read_manifest(root))
    if not theirs.is_file() or sha256(theirs) != sha256(ours):
        raise InitError(f"teacher.init.from {source!r} was trained on another tokenizer than the data's ({ours}): "
                        f"set data.tokenizer.path to its tokenizer ({theirs.name} in its model_files/) and rerun "
                        "the data stage")


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> TeacherResult:
    """Train (or load) the teacher; on resources.processes ranks under torchrun when more than one is asked for."""
    return on_ranks("teacher", params, root, origin, TeacherResult, _train)


def _train(params: config.Params, root: Path, origin: lineage.Origin) -> TeacherResult:
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    cfg, train = params.teacher, splits["train"]
    init_uri = init_sha = ""
    if cfg.init is None:
        spec = spec_from(cfg.arch, root)
        model = build_for(root, spec, train.x)
    else:
        with tempfile.TemporaryDirectory(prefix="shrinkflow-teacher-init-") as scratch:
            model, spec, init_uri, init_sha = load_init(cfg, root, train.x, Path(scratch))
    model = model.to(device)
    with stage_run(root, params, "teacher", origin, device) as run_id:
        if parallel.is_main():  # one MLflow run: rank 0's
            name, digest = datasets.identity(root)
            # the schema: one tensor, or a text's named token ids and mask
            tracking.log_dataset(name, digest, numpy_rows(train.x, slice(0, 1)), train.y[:1].numpy(),
                                 context="training")
        if init_uri and parallel.is_main():
            tracking.set_tags({"teacher.init": init_uri, "teacher.init_sha256": init_sha})

        def on_epoch(epoch: int, loss: float) -> dict[str, float]:
            # every rank: each scores its part of the split (the plain model, not DDP's wrapper); rank 0 logs
            epoch_metrics = {"train_loss": loss, **validation_scores(model, splits["val"])}
            if cfg.train.l1.coefficient > 0:  # show sparsity emerging under L1
                epoch_metrics["near_zero_fraction"] = near_zero_fraction(model, cfg.train.l1.target)
            if parallel.is_main():
                tracking.log_metrics(epoch_metrics, step=epoch)
            return epoch_metrics

        if cfg.train.epochs > 0:
            train_epochs(
                model, adam(model.parameters(), cfg.train.lr, cfg.train.weight_decay), len(train),
                cfg.train.batch_size, cfg.train.epochs, regularised_loss(train, device, cfg.train, params.seed),
                generator=generator, description="teacher", on_epoch=on_epoch, lr_schedule=cfg.train.lr_schedule,
                precision=params.resources.precision, strategy=params.resources.strategy,
            )
        result = TeacherResult(val_accuracy=accuracy(model, splits["val"]), parameters=measure.parameters(model),
                               mlflow_run_id=run_id, init_uri=init_uri, init_sha256=init_sha, epochs=cfg.train.epochs)
        save_and_record(root, "teacher", ModelRole.TEACHER, model, spec,
                        {"val_accuracy": result.val_accuracy, "init": init_uri, "init_sha256": init_sha},
                        {"final_val_accuracy": result.val_accuracy, "parameters": result.parameters})
    return write_result(root, "teacher", result)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("teacher", run, sys.argv[1:], read_spec=launch.read_spec)


if __name__ == "__main__":
    main()
