"""What a text model's ONNX graph takes: token ids and an attention mask, as they are; no preprocessing inside it.

Images and tables get their scaling and standardisation as the first layer of the graph (raw_input.py), so a
caller sends what it has. Text cannot go that way: tokenising is string processing that standard ONNX
operators do not do, so the graph starts at the token ids and the caller tokenises, with the data's
tokenizer.json that travels beside the model (the served pyfunc does, with the `tokenizers` library). What
the caller must send is written into the file's metadata_props, with the tokenizer's sha256 so a caller can
check it tokenises with the right one.

The graph's interface (what serving relies on):
    inputs  input_ids       int64 (batch, sequence)
            attention_mask  int64 (batch, sequence), 1 for a token, 0 for padding
    output  logits          float32 (batch, classes), in the order of class_names
batch and sequence are dynamic; sequence at most the data's max_length (the model's positions are sized by it).
"""

from __future__ import annotations

import json

INPUTS = ("input_ids", "attention_mask")
"""The graph's inputs, in the order of the model's forward (HFClassifier): also the names of load_splits' tensors."""


def onnx_metadata(manifest: dict, digest: str) -> dict[str, str]:
    """The metadata_props of a text model's ONNX file: the class names, what to send and the tokenizer to send it
    with, and the dataset's digest (`digest`: the manifest's sha256)."""
    tokenizer = manifest.get("tokenizer") or {}
    return {
        "class_names": json.dumps(list(manifest["classes"])),
        "input_layout": (f"input_ids, attention_mask: int64 (N, L), L <= {manifest['max_length']}: the text tokenized "
                         "by tokenizer.json (no preprocessing inside the graph)"),
        "output": "logits: float32 (batch, classes), softmax for probabilities, in the order of class_names",
        "tokenizer": json.dumps({"file": tokenizer.get("file", "tokenizer.json"), "sha256": tokenizer.get("sha256"),
                                 "max_length": manifest["max_length"]}),
        "dataset": manifest.get("dataset", ""),
        "dataset_digest": digest,
    }
