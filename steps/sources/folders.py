"""Class folders, the layout the image_folder and text sources share: root/<class>/<file>, or root/train/<class>/
and root/test/<class>/ kept as given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steps.sources.base import DataError

SPLITS = ("train", "test")


def visible(folder: Path) -> list[Path]:
    """The entries of `folder` a person sees (dot-files left out), sorted."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_layout(root: Path, scan: Callable[[Path], dict], loose: Callable[[Path], bool] | None = None,
                 what: str = "files") -> dict[str, dict]:
    """{"all": scan(root)} for the flat layout, {"train": scan(root/train), "test": scan(root/test)} for the split
    one, refusing half a split, other folders beside it, `loose` files (`what`) directly in root, and splits whose
    classes differ."""
    dirs = {p.name for p in visible(root) if p.is_dir()}
    if not set(SPLITS) & dirs:
        return {"all": scan(root)}
    if set(SPLITS) - dirs:
        have, lack = SPLITS if "train" in dirs else SPLITS[::-1]
        raise DataError(f"{root}: has {have}/ but no {lack}/; give both, or put the class folders directly in {root}")
    extra = sorted(dirs - set(SPLITS))
    if extra:
        raise DataError(f"{root}: unexpected folder(s) {extra} beside train/ and test/")
    stray = [p for p in visible(root) if loose(p)] if loose is not None else []
    if stray:
        raise DataError(f"{stray[0]}: {what} must be inside train/<class>/ or test/<class>/")
    parts = {name: scan(root / name) for name in SPLITS}
    only_train = sorted(set(parts["train"]) - set(parts["test"]))
    only_test = sorted(set(parts["test"]) - set(parts["train"]))
    if only_train or only_test:
        raise DataError(
            f"{root}: train/ and test/ hold different classes: only in train/ {only_train}, only in test/ {only_test}"
        )
    return parts
