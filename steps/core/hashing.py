"""Content hashes: the identity of files and folders for manifests, cache keys and tags."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    """sha256 of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weights: a .safetensors file's; in a save_pretrained folder its one weights
    file's, or for a sharded folder that of its shards' names and sha256s in order (the config and tokenizer
    beside them do not count). FileNotFoundError naming the checkpoint when it holds none."""
    from steps.core.layout import weights_file

    single = weights_file(checkpoint)
    if single.is_file():
        return sha256(single)
    shards = sorted(checkpoint.glob("*.safetensors")) if checkpoint.is_dir() else []
    if not shards:
        raise FileNotFoundError(f"{checkpoint}: no safetensors weights")
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}={sha256(shard)};".encode())
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (relative names included); 'absent' if missing.

    `__pycache__` is skipped: Python rewrites it on import, which changes no behaviour.
    """
    if path.is_file():
        return sha256(path)
    if not path.is_dir():
        return "absent"
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{child.relative_to(path)}={sha256(child)};".encode())
    return digest.hexdigest()
