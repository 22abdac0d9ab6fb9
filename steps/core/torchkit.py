"""What the torch stages share: seeding and device, the training loss, loading and saving models by role."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from steps import config
from steps.config.resources import check_device
from steps.compression import accelerator, augment, precision
from steps.compression.families import CHECKPOINT_RECORD, build, checkpoint, family
from steps.compression.families.spec import ModelSpec
from steps.compression.training import Inputs, count, forward, resolve_device, rows, seed_everything
from steps.core import datasets
from steps.core.layout import model_dir, model_path, spec_path
from steps.core.names import ModelRole


def setup(params: config.Params) -> tuple[torch.device, torch.Generator]:
    """Seed, threads and device from params; a generator for batch order. What resources asks of the device
    (fp16, nccl) is refused on a CPU, naming the key, also when device auto found no GPU, and bf16 on a GPU
    without it (before the stage's run opens). On CUDA, cuDNN and cuBLAS are set deterministic
    (accelerator.configure)."""
    seed_everything(params.seed, params.threads)
    device = resolve_device(params.device)
    check_device(params.resources, device.type)
    precision.check(params.resources.precision, device)
    accelerator.configure(device)  # on CUDA only: cuDNN deterministic, no autotuner
    return device, torch.Generator().manual_seed(params.seed)


def regularised_loss(split, device: torch.device, train: config.TrainConfig, seed: int):
    """Cross-entropy on `split` (augmented if `train.augment`), plus the L1 sparsity penalty when its
    coefficient is positive."""
    from steps.compression.regularization import l1_penalty
    from steps.compression.training import cross_entropy_loss

    check_augmentable(split.x, train.augment)
    base = cross_entropy_loss(split, device, augment.for_training(train.augment, seed))
    l1 = train.l1
    if l1.coefficient == 0:
        return base
    return lambda m, idx: base(m, idx) + l1_penalty(m, l1.coefficient, l1.target)


def check_augmentable(x: Inputs, augment_on: bool) -> None:
    """train.augment shifts and flips images: refused on any other data, before a batch fails to index."""
    if augment_on and (isinstance(x, dict) or x.dim() != 4):
        what = "token ids (text)" if isinstance(x, dict) else "feature vectors (a table)"
        raise ValueError(f"train.augment shifts and flips images; the data are {what}: set augment: false")


def spec_from(arch: config.ArchConfig, root: Path) -> ModelSpec:
    """The arch of params.yaml sized from the data's manifest: its input shape and class count (and for text, its
    tokenizer's vocabulary size, padding id and max_length). A family that convolves or patches images
    (`needs_images`) is refused on a table's feature vectors, a family that reads text on anything else."""
    manifest = datasets.read_manifest(root)
    shape = datasets.input_shape(manifest)
    kind = datasets.kind(manifest)
    if (kind == "text") != arch.reads_text:
        raise ValueError(f"arch.name {arch.name!r} {'reads' if arch.reads_text else 'cannot read'} token ids, and "
                         f"data.source {manifest.get('source')!r} gives {kind} data: text goes with name: hf")
    needs_images = family(arch.name).needs_images
    if kind == "features" and needs_images:
        raise ValueError(
            f"arch.name {arch.name!r} needs images, but data.source {manifest.get('source')!r} gives feature "
            f"vectors of shape {list(shape)}: use name: mlp (or a custom model) for a table")
    if kind == "image" and needs_images and shape[1] != shape[2]:
        raise ValueError(f"arch.name {arch.name!r} needs square images, the data's are {shape[1]}x{shape[2]}: "
                         "set data.image_size")
    sizes = {"in_channels": shape[0], "image_size": shape[1]} if kind == "image" else \
        {"in_channels": 0, "image_size": 0}  # no image: the MLP reads input_shape
    if kind == "text":
        sizes |= text_sizes(manifest)
    return ModelSpec(**arch.spec_fields(root), **sizes, num_classes=len(manifest["classes"]), input_shape=list(shape))


def text_sizes(manifest: dict) -> dict:
    """What a text model takes from the data: its tokenizer's vocabulary size and padding id, the sequence length
    and the class names; for a language model (data.task causal_lm) the block size as the length, and the
    end-of-document separator as its end of text (and padding, when the tokenizer has no padding token)."""
    tokenizer = manifest["tokenizer"]
    specials = tokenizer["special_tokens"]
    if datasets.task(manifest) == "causal_lm":
        separator = manifest["separator"]["id"]
        return {"vocab_size": tokenizer["vocab_size"], "pad_token_id": specials.get("pad", {}).get("id", separator),
                "max_length": manifest["block_size"], "task": "causal_lm", "eos_token_id": separator}
    return {"vocab_size": tokenizer["vocab_size"], "pad_token_id": specials["pad"]["id"],
            "max_length": manifest["max_length"], "class_names": list(manifest["classes"])}


@contextlib.contextmanager
def project_importable(root: Path) -> Iterator[None]:
    """The project root on sys.path while a model is built, so arch.factory finds a module beside params.yaml."""
    entry = str(Path(root).resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def build_for(root: Path, spec: ModelSpec, example: Inputs) -> torch.nn.Module:
    """The model of `spec`, refused unless it maps `example` (real samples) to one logit per class."""
    with project_importable(root):
        model = build(spec)
    check_outputs(model, spec, example)
    return model


def check_outputs(model: torch.nn.Module, spec: ModelSpec, example: Inputs) -> None:
    what = f"arch.factory {spec.factory!r}" if spec.factory else f"arch {spec.name!r}"
    two = rows(example, slice(0, 2))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = forward(model, two)
    except Exception as err:
        shape = {k: list(v.shape[1:]) for k, v in two.items()} if isinstance(two, dict) else list(two.shape[1:])
        raise ValueError(f"{what} cannot run on the data's samples of shape {shape}: {err}") from None
    finally:
        model.train(was_training)
    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if spec.task == "causal_lm":  # one logit per vocabulary entry at every position of the block
        length = rows(example, slice(0, 1))["input_ids"].size(1)
        if got[:2] != [count(two), length] or len(got) != 3 or got[2] < spec.vocab_size:
            raise ValueError(f"{what} returns {got} for {count(two)} blocks of {length} tokens; a language model "
                             f"returns logits of shape [batch, {length}, vocabulary >= {spec.vocab_size}]")
        return
    if not isinstance(out, torch.Tensor) or out.shape != (count(two), spec.num_classes):
        raise ValueError(f"{what} returns {got} for a batch of {count(two)}; the data has "
                         f"{spec.num_classes} classes, so it must return logits of shape [batch, {spec.num_classes}]")


def load_model(root: Path, role: ModelRole, device: torch.device | None = None):
    """The checkpoint of `role` and its spec: a family's own folder (hf) when one is there, else the .safetensors
    file and its .json spec (save_model keeps only one of the two on disk)."""
    folder = root / model_dir(role)
    if folder.is_dir():
        model, spec = _folder_family(folder).load_checkpoint(folder)
    else:
        with project_importable(root):
            model, spec = checkpoint.load(root / model_path(role), root / spec_path(role))
    return (model.to(device) if device is not None else model), spec


def _folder_family(folder: Path):
    """The family that wrote a checkpoint folder (its shrinkflow.json's spec names it)."""
    import json

    try:
        name = json.loads((folder / CHECKPOINT_RECORD).read_text())["spec"]["name"]
    except (FileNotFoundError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / CHECKPOINT_RECORD}: not a checkpoint record ({err})") from None
    chosen = family(name)
    if chosen.load_checkpoint is None:
        raise ValueError(f"{folder}: the {name} family saves no checkpoint folder")
    return chosen


def save_model(root: Path, role: ModelRole, model, spec: ModelSpec, meta: dict) -> list[Path]:
    """Save the checkpoint of `role` as its family does (a folder for hf, with the text data's tokenizer.json); the
    other form's files, left by a model of another family, are removed so a stale one is never loaded. Returns
    the files written."""
    chosen = family(spec.name)
    folder, files = root / model_dir(role), [root / model_path(role), root / spec_path(role)]
    if chosen.save_checkpoint is None:
        checkpoint.save(model.cpu(), spec, *files, meta)
        shutil.rmtree(folder, ignore_errors=True)
        return files
    manifest = datasets.read_manifest(root)
    tokenizer = datasets.tokenizer_file(root, manifest) if datasets.kind(manifest) == "text" else None
    extra = {tokenizer.name: tokenizer} if tokenizer is not None else {}  # tokenizer.json: the model's own
    chosen.save_checkpoint(model.cpu(), spec, folder, meta, extra)
    for stale in files:
        stale.unlink(missing_ok=True)
    return sorted(path for path in folder.iterdir() if path.is_file())
