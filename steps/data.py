"""Data step: any data source -> seeded train/val/test splits + manifest.

`data.source` picks a reader in `steps.sources` (IDX files, an image folder,
arrays, a table, texts) and `data.path` the folder or file it reads. Whatever
the source, this writes the same uncompressed .npz splits (uint8 images
(N, C, H, W) under "images", float32 features (N, D) under "features", or
texts as int32 "input_ids" and uint8 "attention_mask" (N, max_length); int64
labels) and `manifest.json`: the dataset's name, source, kind, class names,
input shape, normalisation statistics of the training split, rows and sha256
of every split file and the sha256 of every raw input. Texts are tokenised
after the split (a tokenizer trained here sees the training split only); the
tokenizer.json lies beside the splits, described in the manifest. Every reader
(`steps.core.datasets.load_splits`) re-checks those hashes, so a tampered or
truncated file is refused with its name before any training starts.

`data.task: causal_lm` reads documents instead of labelled samples: split by
document, tokenised and packed into int32 "input_ids" (N, block_size) with
each block's document, no labels (steps/sources/blocks.py); the manifest adds
the task, the block size and each split's documents, tokens and bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from steps import config, sources
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR
from steps.core.results import DataResult
from steps.sources.base import DataError, Encoded, RawData, SourceOptions, TokenizerOptions
from steps.sources.labels import stratified_sample, stratified_split

Split = tuple[np.ndarray, np.ndarray]


def source_options(cfg: config.DataConfig, seed: int, root: Path = Path(".")) -> SourceOptions:
    """The reader's options: the data section's keys of the same names (a tokenizer's path relative to `root`)."""
    feature_columns = tuple(cfg.feature_columns) if cfg.feature_columns is not None else None
    class_names = tuple(cfg.class_names) if cfg.class_names is not None else None
    return SourceOptions(image_size=cfg.image_size, channels=cfg.channels, label_column=cfg.label_column,
                         feature_columns=feature_columns, class_names=class_names, text_column=cfg.text_column,
                         max_length=cfg.max_length, tokenizer=_tokenizer_options(cfg.tokenizer, root),
                         test_fraction=cfg.test_fraction, seed=seed)


def _tokenizer_options(tokenizer: config.data.TokenizerConfig | None, root: Path) -> TokenizerOptions | None:
    if tokenizer is None:
        return None
    if tokenizer.path is not None:
        return TokenizerOptions(path=str(_under(root, tokenizer.path)))
    return TokenizerOptions(kind=tokenizer.train.kind, vocab_size=tokenizer.train.vocab_size)


def _under(root: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def raw_path(params: config.Params, root: Path) -> Path:
    return _under(root, params.data.path)


def split(raw: RawData, cfg: config.DataConfig, seed: int) -> dict[str, Split]:
    """Hold `val_size` training rows out for validation (seeded); optional limits for quick runs.

    "random" is a seeded permutation, the split of every run before data sources existed (so the
    default Fashion-MNIST run keeps its exact rows and order). "stratified" holds out the same
    fraction of every class (a class too small to split is refused by name) and shuffles the
    training rows with the same seed, so a `train_limit` prefix is a random sample, not the first classes.
    """
    x, y = raw.train
    if cfg.val_size >= len(y):
        raise DataError(f"data.val_size={cfg.val_size} leaves no training rows out of {len(y)}")
    rng = np.random.default_rng(seed)
    if cfg.val_split == "random":
        order = rng.permutation(len(y))
        val_idx, train_idx = order[: cfg.val_size], order[cfg.val_size :]
    else:
        train_idx, val_idx = stratified_split(y, cfg.val_size / len(y), seed, raw.class_names)
        train_idx = rng.permutation(train_idx)
    if cfg.train_limit is not None:
        train_idx = train_idx[: cfg.train_limit]
    test_x, test_y = raw.test
    test_idx = np.arange(len(test_y))
    if cfg.test_limit is not None:
        # Sources list their test rows class by class (folders, tables sorted by label): a prefix would miss
        # classes, so "stratified" takes a seeded stratified sample, kept in the source's order.
        test_idx = test_idx[: cfg.test_limit] if cfg.val_split == "random" else \
            stratified_sample(test_y, cfg.test_limit, seed)
    splits = {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]),
              "test": (test_x[test_idx], test_y[test_idx])}
    _every_class_trains(splits["train"][1], raw.class_names)
    return splits


def _every_class_trains(labels: np.ndarray, class_names: tuple[str, ...]) -> None:
    missing = sorted(set(range(len(class_names))) - set(np.unique(labels).tolist()))
    if missing:
        names = [class_names[i] for i in missing]
        raise DataError(f"class(es) {names} have no training rows after the validation split and "
                        "data.train_limit; raise train_limit or lower val_size")


def normalization(kind: str, train_x: np.ndarray) -> dict[str, list[float]]:
    """Statistics of the training split only: per channel of pixels in [0, 1] (images), or per feature (tables).

    Images: each channel's mean over a contiguous float64 copy, summed in the same order as
    the single-channel statistics of earlier runs, so Fashion-MNIST keeps its exact values.
    Features: a constant feature gets std 1 (it carries no information; dividing by 0 would make NaN).
    """
    if kind == "image":
        pixels = train_x.astype(np.float64) / 255.0
        channels = [np.ascontiguousarray(pixels[:, c]) for c in range(pixels.shape[1])]
        return {"mean": [float(c.mean()) for c in channels], "std": [float(c.std()) for c in channels]}
    values = train_x.astype(np.float64)
    std = values.std(axis=0)
    return {"mean": values.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def raw_hashes(raw: RawData, path: Path) -> dict[str, str]:
    """{file: sha256} of every raw input (`raw.raw_files`; documents have them too), named relative to data.path
    (a file: its own name)."""
    base = path if path.is_dir() else path.parent
    return {file.relative_to(base).as_posix(): sha256(file) for file in raw.raw_files}


def combined_digest(hashes: dict[str, str]) -> str:
    """One sha256 over every raw file's name and sha256: it changes when a file is added, removed or edited."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def encode(raw: RawData, splits: dict[str, Split], options: SourceOptions) -> Encoded:
    """The arrays to write: texts through their encoder (`sources.ENCODERS`, by kind), images and features as
    they are, under "images" or "features"."""
    if raw.kind in sources.ENCODERS:
        return sources.ENCODERS.resolve(raw.kind)(splits, options)
    key = "images" if raw.kind == "image" else "features"
    return Encoded(arrays={name: {key: x, "labels": labels} for name, (x, labels) in splits.items()},
                   input_shape=raw.train[0].shape[1:], files={}, manifest={})


def write_splits(root: Path, arrays: dict[str, dict[str, np.ndarray]], manifest_fields: dict,
                 extra_files: dict[str, bytes] | None = None) -> DataResult:
    """Write splits (each {name: array}, labels included) + any extra files + manifest into a temp dir, then
    swap it in whole."""
    out = root / DATA_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".processed.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data is not secret
    try:
        files = {}
        for name, split_arrays in arrays.items():
            path = tmp / f"{name}.npz"
            np.savez(path, **split_arrays)
            files[f"{name}.npz"] = {"sha256": sha256(path), "rows": _rows(split_arrays)}
        for name, content in (extra_files or {}).items():
            (tmp / name).write_bytes(content)
        manifest = DataResult(files=files, **manifest_fields)
        (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _rows(split_arrays: dict[str, np.ndarray]) -> int:
    """A split's samples: its labels, or (language-model blocks have none) its first array's rows."""
    return len(split_arrays["labels"] if "labels" in split_arrays else next(iter(split_arrays.values())))


def _by_task(params: config.Params, path: Path, options: SourceOptions) -> tuple[dict, dict, dict[str, bytes]]:
    """write_splits' arrays, manifest fields and files for a data.task other than classify (steps.sources.TASKS):
    documents, split by document and encoded by the task."""
    cfg = params.data
    if not path.exists():
        raise DataError(f"{path}: does not exist (data.path for the {cfg.source} source)")
    every, encoded = sources.TASKS.resolve(cfg.task)(path, options, block_size=cfg.block_size, val_size=cfg.val_size,
                                                      train_limit=cfg.train_limit, test_limit=cfg.test_limit)
    hashes = raw_hashes(every, path)
    fields = {
        "dataset": every.name, "source": cfg.source, "kind": "text", "classes": [],
        "input_shape": list(encoded.input_shape), "feature_names": [], "seed": params.seed, "raw": hashes,
        "raw_sha256": combined_digest(hashes), "normalization": {}, **encoded.manifest,
    }
    return encoded.arrays, fields, encoded.files


def run(params: config.Params, root: Path) -> DataResult:
    """Read the raw data with its source, split it, write the splits and manifest; returns the manifest."""
    cfg = params.data
    path = raw_path(params, root)
    options = source_options(cfg, params.seed, root)
    if cfg.task != sources.CLASSIFY:
        return write_splits(root, *_by_task(params, path, options))
    raw = sources.read(cfg.source, path, options)
    splits = split(raw, cfg, params.seed)
    encoded = encode(raw, splits, options)
    hashes = raw_hashes(raw, path)
    fields = {
        "dataset": raw.name, "source": cfg.source, "kind": raw.kind, "classes": list(raw.class_names),
        "input_shape": list(encoded.input_shape), "feature_names": list(raw.feature_names),
        "seed": params.seed, "raw": hashes, "raw_sha256": combined_digest(hashes),
        "normalization": normalization(raw.kind, splits["train"][0]) if raw.kind != "text" else {},
        "resize": cfg.image_size if raw.kind == "image" else None, **encoded.manifest,
    }
    return write_splits(root, encoded.arrays, fields, encoded.files)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("data", run, sys.argv[1:])


if __name__ == "__main__":
    main()
