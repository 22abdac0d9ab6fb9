"""The input contract of a registered model: what a caller sends, what it gets back, read from the data manifest.

A registered model name holds one task: the same kind of input (images of one shape and channel
count, the same named features, or texts in the same named column) and the same class names. The
contract is stored inside the registered model (its MLmodel metadata and `contract.json`), so serving
never re-reads the project.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

METADATA_KEY = "shrinkflow_contract"
"""Where a registered model's MLmodel metadata holds its contract (`to_dict()`)."""
DEFAULT_TEXT_COLUMN = "text"
"""The text column of data read from class folders (which have no table, so no data.text_column)."""
KINDS = ("image", "features", "text")
RESERVED_COLUMNS = ("label", "class_index")
"""The answer's own columns; a class may not be named like them (its probability column would collide)."""


class ContractError(ValueError):
    """Data whose contract cannot be served (a class named like an answer column, an unknown kind)."""


@dataclass(frozen=True)
class Contract:
    """Raw input in, named classes out.

    Images: raw pixel values 0-255, `channels` x `height` x `width` (`resize`: the square size the data
    stage resized to, so other sizes are resized the same way; None: other sizes are refused), scaled
    by 1/255 then standardised per channel. Features: the named columns, unscaled, standardised per
    feature. The ONNX graph does the scaling and standardisation itself: `mean`/`std` are recorded so a
    reader knows what it does, not for callers to apply. Texts: raw strings (`text_column` names them in a
    table), tokenised outside the graph by the data's tokenizer.json (`tokenizer_sha256`), truncated on the
    right and padded with `pad_token` (`pad_id`) to `input_shape[0]` tokens, as the data stage tokenised them.
    """

    kind: str
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    resize: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    dataset: str = ""
    dataset_digest: str = ""
    text_column: str = ""
    tokenizer_sha256: str = ""
    pad_token: str = ""
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ContractError(f"input kind {self.kind!r}: expected one of {list(KINDS)}")
        if self.images and (len(self.input_shape) != 3 or self.channels not in (1, 3)):
            raise ContractError(f"image input_shape {list(self.input_shape)}: expected [C, H, W] with C 1 or 3")
        if self.texts and (len(self.input_shape) != 1 or not self.text_column or not self.tokenizer_sha256
                           or not self.pad_token):
            raise ContractError(f"a text contract needs input_shape [max_length] (got {list(self.input_shape)}), a "
                                "text_column, the tokenizer's sha256 and its pad token")
        if self.kind == "features" and len(self.feature_names) != self.input_shape[0]:
            raise ContractError(f"{len(self.feature_names)} feature names for input_shape {list(self.input_shape)}")
        clash = sorted(set(self.classes) & set(RESERVED_COLUMNS))
        if clash:
            raise ContractError(f"class name(s) {clash} collide with the answer's columns {list(RESERVED_COLUMNS)}")

    @classmethod
    def from_manifest(cls, manifest: dict, digest: str) -> Contract:
        """The contract of a processed dataset (data/processed/manifest.json); `digest`: the manifest's sha256."""
        if manifest.get("kind") == "text":
            return cls.from_text_manifest(manifest, digest)
        stats = manifest["normalization"]
        listed = lambda v: tuple(float(s) for s in (v if isinstance(v, list) else [v]))  # noqa: E731
        return cls(kind=manifest.get("kind", "image"), input_shape=tuple(manifest["input_shape"]),
                   classes=tuple(manifest["classes"]), feature_names=tuple(manifest.get("feature_names") or ()),
                   mean=listed(stats["mean"]), std=listed(stats["std"]), resize=manifest.get("resize"),
                   dataset=manifest["dataset"], dataset_digest=digest)

    @classmethod
    def from_text_manifest(cls, manifest: dict, digest: str) -> Contract:
        """Texts: the column, the tokenizer's sha256 and pad token, max_length as the one-dimensional input shape."""
        tokenizer = manifest["tokenizer"]
        pad = tokenizer["special_tokens"]["pad"]
        return cls(kind="text", input_shape=(int(manifest["max_length"]),), classes=tuple(manifest["classes"]),
                   text_column=manifest.get("text_column") or DEFAULT_TEXT_COLUMN,
                   tokenizer_sha256=tokenizer["sha256"], pad_token=pad["token"], pad_id=int(pad["id"]),
                   dataset=manifest["dataset"], dataset_digest=digest)

    @classmethod
    def from_dict(cls, raw: dict) -> Contract:
        """From `to_dict()`'s form (JSON lists); ContractError naming what is missing or malformed."""
        try:
            return cls(kind=raw["kind"], input_shape=tuple(int(n) for n in raw["input_shape"]),
                       classes=tuple(str(c) for c in raw["classes"]),
                       feature_names=tuple(str(f) for f in raw.get("feature_names") or ()),
                       resize=None if raw.get("resize") is None else int(raw["resize"]),
                       mean=tuple(raw.get("mean") or ()), std=tuple(raw.get("std") or ()),
                       dataset=raw.get("dataset", ""), dataset_digest=raw.get("dataset_digest", ""),
                       text_column=str(raw.get("text_column") or ""),
                       tokenizer_sha256=str(raw.get("tokenizer_sha256") or ""),
                       pad_token=str(raw.get("pad_token") or ""), pad_id=int(raw.get("pad_id") or 0))
        except (KeyError, TypeError, ValueError) as err:
            raise ContractError(f"malformed input contract ({type(err).__name__}: {err})") from None

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> Contract | None:
        """The contract in a registered model's MLmodel `metadata` (METADATA_KEY); None when it holds none (a
        version registered before contracts); ContractError when it is malformed."""
        stored = (metadata or {}).get(METADATA_KEY)
        if stored is None:
            return None
        if not isinstance(stored, dict):
            raise ContractError(f"malformed input contract (a {type(stored).__name__}, not a mapping)")
        return cls.from_dict(stored)

    @classmethod
    def read(cls, path: Path) -> Contract:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def images(self) -> bool:
        return self.kind == "image"

    @property
    def texts(self) -> bool:
        return self.kind == "text"

    @property
    def max_length(self) -> int:
        """Texts: the tokens a text is truncated and padded to."""
        return self.input_shape[0]

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images the model takes."""
        return self.input_shape[1], self.input_shape[2]

    def task(self) -> dict:
        """What every version of one registered model must share: the input's kind and shape (the feature
        names for tables, the text column for texts) and the class names. Normalisation, dataset, and for texts the
        tokenizer and max_length (each version carries its own tokenizer) may change between retrains."""
        if self.images:
            shape = {"input_shape": list(self.input_shape)}
        elif self.texts:
            shape = {"text_column": self.text_column}
        else:
            shape = {"feature_names": list(self.feature_names)}
        return {"kind": self.kind, **shape, "classes": list(self.classes)}

    def differences(self, other: Contract) -> list[str]:
        """How `other`'s task differs from this one's ('classes: [...] vs [...]'); [] when they are one task."""
        mine, theirs = self.task(), other.task()
        return [f"{key}: {mine.get(key)} vs {theirs.get(key)}" for key in sorted(set(mine) | set(theirs))
                if mine.get(key) != theirs.get(key)]

    def describe(self) -> str:
        """One line for logs, errors and the README: 'images 1x28x28 (raw 0-255) -> 10 classes (T-shirt/top, ...)'."""
        names = ", ".join(self.classes[:4]) + (", ..." if len(self.classes) > 4 else "")
        if self.images:
            size = f", other sizes resized to {self.resize}x{self.resize}" if self.resize else ""
            what = f"images {'x'.join(map(str, self.input_shape))} (raw pixel values 0-255{size})"
        elif self.texts:
            what = (f"raw texts (strings; a table's column {self.text_column!r}), tokenised to at most "
                    f"{self.max_length} tokens")
        else:
            what = f"tables of {len(self.feature_names)} named features (unscaled)"
        return f"{what} -> {len(self.classes)} classes ({names})"

    def onnx_metadata(self) -> dict[str, str]:
        """The ONNX file's metadata_props: what an edge device needs to call it without the pipeline."""
        if self.texts:
            return self.text_onnx_metadata()
        if self.images:
            layout = (f"x: float32 (N, {', '.join(map(str, self.input_shape))}), channels first, "
                      "raw pixel values 0-255")
        else:
            layout = f"x: float32 (N, {len(self.feature_names)}), raw feature values in the order of feature_names"
        return {
            "shrinkflow.contract": json.dumps(self.to_dict()),
            "class_names": json.dumps(list(self.classes)),
            "input_layout": layout,
            "output": "logits: float32 (batch, classes), softmax for probabilities, in the order of class_names",
            "normalization": json.dumps({"scale": 255.0 if self.images else 1.0, "mean": list(self.mean),
                                         "std": list(self.std), "inside_graph": True}),
            "dataset": self.dataset,
            "dataset_digest": self.dataset_digest,
        }

    def text_onnx_metadata(self) -> dict[str, str]:
        """Texts: the graph takes token ids, so the metadata names the tokenizer and how to call it."""
        return {
            "shrinkflow.contract": json.dumps(self.to_dict()),
            "class_names": json.dumps(list(self.classes)),
            "input_layout": (f"input_ids, attention_mask: int64 (N, sequence), sequence at most {self.max_length}: "
                             f"the texts through tokenizer.json (sha256 {self.tokenizer_sha256}), truncated on the "
                             f"right and padded with {self.pad_token} (id {self.pad_id}); attention_mask 1 on tokens"),
            "output": "logits: float32 (batch, classes), softmax for probabilities, in the order of class_names",
            "tokenizer": json.dumps({"file": "tokenizer.json", "sha256": self.tokenizer_sha256,
                                     "max_length": self.max_length}),
            "dataset": self.dataset,
            "dataset_digest": self.dataset_digest,
        }
