"""What batch scoring needs of a registered model's input contract (its MLmodel metadata `shrinkflow_contract`).

The registered model stores the whole contract (normalisation, dataset digest...); readers need only the
input's kind and shape, the feature names, the resize size and the class names, so other keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

METADATA_KEY = "shrinkflow_contract"
KINDS = ("image", "features")


class ContractMissing(ValueError):
    """The model carries no usable input contract; the message names the model and what is wrong."""


@dataclass(frozen=True)
class InputContract:
    """kind "image": input_shape (C, H, W), raw pixels 0-255, other sizes resized to `resize` x `resize` when set.
    kind "features": input_shape (D,), the columns `feature_names`, unscaled."""

    kind: str
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    resize: int | None = None

    @classmethod
    def from_metadata(cls, metadata: dict | None, model: str) -> InputContract:
        """The contract in a pyfunc model's `metadata.metadata`; ContractMissing naming `model` when absent or bad."""
        raw = (metadata or {}).get(METADATA_KEY)
        if not isinstance(raw, dict):
            raise ContractMissing(f"{model} carries no {METADATA_KEY!r} in its MLmodel metadata (registered before "
                                  "batch scoring existed?): retrain and promote it, then score with the new version")
        try:
            contract = cls(kind=raw["kind"], input_shape=tuple(int(n) for n in raw["input_shape"]),
                           classes=tuple(str(c) for c in raw["classes"]),
                           feature_names=tuple(str(f) for f in raw.get("feature_names") or ()),
                           resize=None if raw.get("resize") is None else int(raw["resize"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ContractMissing(f"{model}: malformed {METADATA_KEY!r} ({type(err).__name__}: {err})") from None
        contract.check(model)
        return contract

    def check(self, model: str) -> None:
        if self.kind not in KINDS:
            raise ContractMissing(f"{model}: input kind {self.kind!r}, expected one of {list(KINDS)}")
        if self.images and (len(self.input_shape) != 3 or self.channels not in (1, 3)):
            raise ContractMissing(f"{model}: image input_shape {list(self.input_shape)}, expected [C, H, W], C 1 or 3")
        if not self.images and len(self.feature_names) != self.input_shape[0]:
            raise ContractMissing(f"{model}: {len(self.feature_names)} feature names for input_shape "
                                  f"{list(self.input_shape)}")

    @property
    def images(self) -> bool:
        return self.kind == "image"

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images the model takes."""
        return self.input_shape[1], self.input_shape[2]

    def describe(self) -> str:
        if self.images:
            resized = f", other sizes resized to {self.resize}x{self.resize}" if self.resize else ""
            return f"images {'x'.join(map(str, self.input_shape))}{resized}"
        return f"tables with the feature columns {list(self.feature_names)}"
