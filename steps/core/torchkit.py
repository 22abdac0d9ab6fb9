"""What the torch stages share: seeding and device, the training loss, loading and saving models by role."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from steps import config
from steps.compression import augment
from steps.compression.families import build, checkpoint, family
from steps.compression.families.spec import ModelSpec
from steps.compression.training import resolve_device, seed_everything
from steps.core import datasets
from steps.core.layout import model_path, spec_path
from steps.core.names import ModelRole


def setup(params: config.Params) -> tuple[torch.device, torch.Generator]:
    """Seed, threads and device from params; a generator for batch order."""
    seed_everything(params.seed, params.threads)
    return resolve_device(params.device), torch.Generator().manual_seed(params.seed)


def regularised_loss(split, device: torch.device, train: config.TrainConfig, seed: int):
    """Cross-entropy on `split` (augmented if `train.augment`), plus the L1 sparsity penalty when its
    coefficient is positive."""
    from steps.compression.regularization import l1_penalty
    from steps.compression.training import cross_entropy_loss

    if train.augment and split.x.dim() != 4:
        raise ValueError("train.augment shifts and flips images; the data are feature vectors (a table): "
                         "set augment: false")
    base = cross_entropy_loss(split, device, augment.for_training(train.augment, seed))
    l1 = train.l1
    if l1.coefficient == 0:
        return base
    return lambda m, idx: base(m, idx) + l1_penalty(m, l1.coefficient, l1.target)


def spec_from(arch: config.ArchConfig, root: Path) -> ModelSpec:
    """The arch of params.yaml sized from the data's manifest: its input shape and class count. A family
    that convolves or patches images (`needs_images`) is refused on a table's feature vectors."""
    manifest = datasets.read_manifest(root)
    shape = datasets.input_shape(manifest)
    kind = datasets.kind(manifest)
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
    return ModelSpec(**arch.model_dump(), **sizes, num_classes=len(manifest["classes"]), input_shape=list(shape))


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


def build_for(root: Path, spec: ModelSpec, example: torch.Tensor) -> torch.nn.Module:
    """The model of `spec`, refused unless it maps `example` (real samples) to one logit per class."""
    with project_importable(root):
        model = build(spec)
    check_outputs(model, spec, example)
    return model


def check_outputs(model: torch.nn.Module, spec: ModelSpec, example: torch.Tensor) -> None:
    what = f"arch.factory {spec.factory!r}" if spec.factory else f"arch {spec.name!r}"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example[:2])
    except Exception as err:
        raise ValueError(f"{what} cannot run on the data's samples of shape {list(example.shape[1:])}: {err}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (len(example[:2]), spec.num_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} returns {got} for a batch of {len(example[:2])}; the data has "
                         f"{spec.num_classes} classes, so it must return logits of shape [batch, {spec.num_classes}]")


def load_model(root: Path, role: ModelRole, device: torch.device | None = None):
    with project_importable(root):
        model, spec = checkpoint.load(root / model_path(role), root / spec_path(role))
    return (model.to(device) if device is not None else model), spec


def save_model(root: Path, role: ModelRole, model, spec: ModelSpec, meta: dict) -> None:
    checkpoint.save(model.cpu(), spec, root / model_path(role), root / spec_path(role), meta)
