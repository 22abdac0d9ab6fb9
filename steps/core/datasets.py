"""What every stage reads: the processed splits, refused unless each file's sha256 matches the manifest.

Shapes, classes, kind and normalisation come from the manifest (`DataResult`), never from code:
the same readers serve an IDX folder, an image folder, arrays and a table; texts (token ids and attention
masks, with their tokenizer.json) have their own readers, `load_text`, `raw_texts` (the test split as written)
and `tokenizer_file`; a language model's blocks of token ids (data.task causal_lm) `load_blocks`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, MANIFEST
from steps.sources.base import DataError, check_labels  # one error and label check for raw and processed data

SPLITS = ("train", "val", "test")
KEYS = {"image": "images", "features": "features"}


def kind(manifest: dict) -> str:
    """"image", "features" or "text"; manifests from before data sources held images only."""
    return manifest.get("kind", "image")


def task(manifest: dict) -> str:
    """"classify" (labelled samples; manifests leave it out) or "causal_lm" (blocks of token ids: load_blocks)."""
    return manifest.get("task", "classify")


def check_pair(x: np.ndarray, labels: np.ndarray, where: str, manifest: dict) -> None:
    """One split's arrays are what the manifest says: uint8 images or float32 features of its input
    shape, as many integer labels below its class count."""
    num_classes = len(manifest["classes"])
    shape = manifest.get("input_shape")
    images = kind(manifest) == "image"
    if images and x.dtype != np.uint8 or not images and x.dtype != np.float32 or labels.dtype.kind not in "iu":
        wanted = "uint8 images" if images else "float32 features"
        raise DataError(f"{where}: expected {wanted} and integer labels, got {x.dtype}/{labels.dtype}")
    if labels.shape != (len(x),):
        raise DataError(f"{where}: {len(x)} images but labels of shape {labels.shape}")
    if len(labels) == 0:
        raise DataError(f"{where}: empty split")
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(f"{where}: label {bad} out of range 0..{num_classes - 1}")
    if images and (x.ndim != 4 or (shape is not None and list(x.shape[1:]) != shape)):
        expected = f"(N, {', '.join(map(str, shape))})" if shape else "(N, C, H, W)"
        raise DataError(f"{where}: expected images of shape {expected}, got {x.shape}")
    if not images and (x.ndim != 2 or list(x.shape[1:]) != shape):
        raise DataError(f"{where}: expected features of shape (N, {shape[0]}), got {x.shape}")


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the data stage first") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt manifest: {err}") from None


def _checked(path: Path, expected: str | None, what: str) -> Path:
    if expected is None or not path.is_file():
        raise DataError(f"{path}: missing {what}")
    if sha256(path) != expected:
        raise DataError(f"{path}: sha256 does not match {MANIFEST}; the file was changed or truncated")
    return path


def _split_file(root: Path, name: str, manifest: dict) -> Path:
    entry = manifest["files"].get(f"{name}.npz")
    return _checked(root / DATA_DIR / f"{name}.npz", entry and entry["sha256"], "split file")


def load_arrays(root: Path, name: str, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """One split's samples and labels, refused unless its sha256 matches the manifest."""
    path = _split_file(root, name, manifest)
    if kind(manifest) not in KEYS:
        raise DataError(f"{path}: {kind(manifest)} splits hold token ids and attention masks; read them with load_text")
    with np.load(path, allow_pickle=False) as npz:
        x, labels = npz[KEYS[kind(manifest)]], npz["labels"]
    if x.ndim == 3 and "input_shape" not in manifest:
        x = x[:, None]  # a grayscale (N, H, W) split written before data sources existed
    check_pair(x, labels, str(path), manifest)
    return x, labels


def load_text(root: Path, name: str, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One text split's int32 input_ids and uint8 attention_mask, both (N, max_length), and its labels; refused
    unless its sha256 matches the manifest."""
    path = _split_file(root, name, manifest)
    if task(manifest) != "classify":
        raise DataError(f"{path}: {task(manifest)} splits hold blocks of token ids and no labels; read them with "
                        "load_blocks")
    with np.load(path, allow_pickle=False) as npz:
        ids, mask, labels = npz["input_ids"], npz["attention_mask"], npz["labels"]
    expected = (len(labels), manifest["max_length"])
    if ids.dtype != np.int32 or mask.dtype != np.uint8 or ids.shape != expected or mask.shape != expected:
        raise DataError(f"{path}: expected int32 input_ids and uint8 attention_mask of shape {expected}, got "
                        f"{ids.dtype} {ids.shape} and {mask.dtype} {mask.shape}")
    return ids, mask, check_labels(labels, manifest["classes"], str(path))


BLOCK_ARRAYS = ("input_ids", "document", "document_starts", "document_bytes")
"""A causal_lm split's arrays (steps/sources/blocks.py)."""


def load_blocks(root: Path, name: str, manifest: dict) -> dict[str, np.ndarray]:
    """One causal_lm split's arrays (BLOCK_ARRAYS): int32 input_ids (N, block_size), the int64 document each block
    starts in (N,), where each document starts in the token stream (D + 1,) and its UTF-8 bytes (D,); refused
    unless its sha256 matches the manifest and the arrays agree with it."""
    path = _split_file(root, name, manifest)
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in BLOCK_ARRAYS if key not in npz]
        if missing:
            raise DataError(f"{path}: no {missing[0]} array; not a causal_lm split (rerun the data stage)")
        arrays = {key: npz[key] for key in BLOCK_ARRAYS}
    ids, document, starts = arrays["input_ids"], arrays["document"], arrays["document_starts"]
    blocks, docs = manifest["files"][f"{name}.npz"]["rows"], manifest["documents"][name]
    if ids.dtype != np.int32 or ids.shape != (blocks, manifest["block_size"]):
        raise DataError(f"{path}: expected int32 input_ids of shape {(blocks, manifest['block_size'])}, got "
                        f"{ids.dtype} {ids.shape}")
    if document.shape != (blocks,) or starts.shape != (docs + 1,) or arrays["document_bytes"].shape != (docs,):
        raise DataError(f"{path}: document arrays of shapes {document.shape}, {starts.shape} and "
                        f"{arrays['document_bytes'].shape} do not fit {blocks} blocks of {docs} documents")
    return arrays


def raw_texts(root: Path, name: str) -> tuple[list[str], np.ndarray]:
    """A text split's texts as written (what a caller sends the served model) and its labels; hash-checked. Only
    the test split keeps them (steps/sources/tokens.py RAW_SPLIT)."""
    from steps.sources.tokens import RAW_TEXT_KEYS, unpack_texts

    manifest = read_manifest(root)
    path = _split_file(root, name, manifest)
    with np.load(path, allow_pickle=False) as npz:
        if not all(key in npz for key in RAW_TEXT_KEYS):
            raise DataError(f"{path}: holds no raw texts (written before the served model took texts); rerun the "
                            "data stage")
        texts, labels = unpack_texts(*(npz[key] for key in RAW_TEXT_KEYS)), npz["labels"]
    return texts, check_labels(labels, manifest["classes"], str(path))


def tokenizer_file(root: Path, manifest: dict) -> Path:
    """The text data's tokenizer.json beside the splits, refused unless its sha256 matches the manifest."""
    tokenizer = manifest.get("tokenizer") or {}
    return _checked(root / DATA_DIR / tokenizer.get("file", "tokenizer.json"), tokenizer.get("sha256"), "tokenizer")


def input_shape(manifest: dict) -> tuple[int, ...]:
    """One sample's shape, (C, H, W) or (D,); older manifests did not record it, their splits do."""
    if "input_shape" in manifest:
        return tuple(manifest["input_shape"])
    raise DataError(f"{MANIFEST}: no input_shape (written before data sources existed); rerun the data stage")


def normalise(x: np.ndarray, manifest: dict):
    """float32 tensor of `x` standardised with the manifest's training statistics.

    Images: pixels / 255, then (p - mean[c]) / std[c] per channel (a scalar mean/std in older manifests).
    Features: (v - mean[j]) / std[j] per feature.
    """
    import torch

    stats = manifest["normalization"]
    if kind(manifest) == "image":
        view = (1, -1, 1, 1)
        mean = torch.tensor(np.atleast_1d(stats["mean"]), dtype=torch.float32).view(view)
        std = torch.tensor(np.atleast_1d(stats["std"]), dtype=torch.float32).view(view)
        return torch.from_numpy(x).float().div_(255.0).sub_(mean).div_(std)
    mean = torch.tensor(stats["mean"], dtype=torch.float32)
    std = torch.tensor(stats["std"], dtype=torch.float32)
    return torch.from_numpy(x).sub(mean).div_(std)


def load_splits(root: Path, names: tuple[str, ...] = SPLITS):
    """Hash-checked tensors for training: {name: training.Split}; images and features normalised, texts as int64
    input_ids and attention_mask; causal_lm blocks as int64 {"input_ids": ids} with the same ids as targets."""
    import torch

    from steps.compression.training import Split

    manifest = read_manifest(root)
    result = {}
    for name in names:
        if task(manifest) == "causal_lm":  # a language model's targets are its input ids (the model shifts them)
            labels = load_blocks(root, name, manifest)["input_ids"]
            x = {"input_ids": torch.from_numpy(labels.astype(np.int64))}
            result[name] = Split(x=x, y=x["input_ids"])
            continue
        if kind(manifest) == "text":  # token ids and masks by name: the keyword arguments of a text model
            tokens, labels = _token_arrays(root, name, manifest)
            x = {key: torch.from_numpy(array) for key, array in tokens.items()}
        else:
            x, labels = load_arrays(root, name, manifest)
            x = normalise(x, manifest)
        result[name] = Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))
    return result


def raw_split(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as the data's owner has it: uint8 pixels 0-255 (N, C, H, W) or unscaled float32 features (N, D),
    and the labels; what the served model and the deployable ONNX files take."""
    return load_arrays(root, name, read_manifest(root))


def onnx_split(root: Path, name: str) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray]:
    """One split as the deployable ONNX files take it, and its labels: raw pixels or unscaled features as float32
    (their graphs standardise: steps/compression/raw_input.py), or for text the int64 input_ids and
    attention_mask by name, which the graph takes as they are (steps/export.py)."""
    manifest = read_manifest(root)
    if kind(manifest) == "text":
        return _token_arrays(root, name, manifest)
    x, labels = load_arrays(root, name, manifest)
    return x.astype(np.float32), labels


def _token_arrays(root: Path, name: str, manifest: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A text split's int64 input_ids and attention_mask by name (what a text model and its ONNX file take), and
    its labels."""
    ids, mask, labels = load_text(root, name, manifest)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}, labels


def contract(root: Path):
    """The input contract of the processed data (steps/serving/contract.py): what the served model takes."""
    from steps.serving.contract import Contract

    return Contract.from_manifest(read_manifest(root), sha256(root / MANIFEST))


def identity(root: Path) -> tuple[str, str]:
    """(name, digest) of the processed data, for MLflow's dataset lineage: the manifest's dataset name with
    the first 16 hex digits of the manifest's sha256 (which covers every split file's sha256)."""
    digest = sha256(root / MANIFEST)[:16]
    return f"{read_manifest(root)['dataset']}-{digest}", digest
