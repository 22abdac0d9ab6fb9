"""A checkpoint's weights hash, in each form a checkpoint takes: a .safetensors file, a save_pretrained folder
with one weights file, and a sharded one (whose hash covers every shard, and nothing but the weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from steps.core.hashing import weights_sha256


def test_a_checkpoints_weights_hash_covers_its_weights_in_every_form(tmp_path: Path):
    single = tmp_path / "student.safetensors"
    single.write_bytes(b"weights")
    assert weights_sha256(single) == hashlib.sha256(b"weights").hexdigest()
    folder = tmp_path / "teacher"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    assert weights_sha256(folder) == weights_sha256(single)  # the config beside them does not count
    sharded = tmp_path / "big"
    sharded.mkdir()
    for i in (1, 2):
        (sharded / f"model-0000{i}-of-00002.safetensors").write_bytes(b"shard %d" % i)
    before = weights_sha256(sharded)
    (sharded / "model-00002-of-00002.safetensors").write_bytes(b"changed")
    assert weights_sha256(sharded) != before  # every shard counts
    with pytest.raises(FileNotFoundError, match="empty: no safetensors weights"):
        (tmp_path / "empty").mkdir()
        weights_sha256(tmp_path / "empty")
