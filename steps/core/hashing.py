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
