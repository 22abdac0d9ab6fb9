"""Fetch a DVC-tracked directory by its hash from the DVC remote, verifying every object on the way.

The read side for audits (dvc.py is the write side: commit and push). DVC
addresses content by md5: a directory is a `.dir` object (a JSON list of
{relpath, md5}) whose own name is the md5 of its bytes. So fetching by hash
and checking each md5 proves the bytes are exactly what was recorded, whatever
the remote or the local cache now hold; the local cache is not consulted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from steps.core import environment

environment.apply_defaults()  # DVC reads DVC_NO_ANALYTICS when it starts


class DataMismatch(ValueError):
    """What the remote returned does not hash to what was recorded; names the file."""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def remote_at(root: Path, rev: str | None) -> str | None:
    """The default remote's name in the DVC config committed at git revision `rev` (None: current default).

    Only the name is taken from history: where a remote lives and its credentials are deployment settings
    (`.dvc/config.local`, the environment) that a commit does not hold, and a moved remote keeps its name.
    """
    from dvc.repo import Repo

    if rev is None:
        return None
    with Repo(str(root), rev=rev) as repo:
        return repo.config["core"].get("remote")


@contextlib.contextmanager
def _remote_odb(root: Path, rev: str | None):
    """The object store of the remote that was the default at git revision `rev`."""
    from dvc.repo import Repo

    name = remote_at(root, rev)
    with contextlib.chdir(root), Repo(str(root)) as repo:
        yield repo.cloud.get_remote_odb(name, "fetch")


def fetch_dir(root: Path, dir_hash: str, dest: Path, rev: str | None = None) -> list[str]:
    """Write the directory recorded as `dir_hash` ('<md5>.dir') into `dest`; returns the files written.

    Raises DataMismatch naming the object or file whose content does not match its hash.
    """
    if not dir_hash.endswith(".dir"):
        raise DataMismatch(f"{dir_hash!r} is not a DVC directory hash ('<md5>.dir')")
    with _remote_odb(root, rev) as odb:
        where = odb.path
        listing = _read_object(odb, dir_hash.removesuffix(".dir") + ".dir", f"directory listing {dir_hash}")
        entries = json.loads(listing)
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for entry in entries:
            content = _read_object(odb, entry["md5"], entry["relpath"])
            target = dest / entry["relpath"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(entry["relpath"])
    return [f"{rel} (from {where})" for rel in written]


def _read_object(odb, oid: str, label: str) -> bytes:
    try:
        content = odb.fs.cat_file(odb.oid_to_path(oid))
    except FileNotFoundError:
        raise DataMismatch(f"{label}: object {oid} is not on the DVC remote {odb.path}") from None
    actual = _md5(content) + (".dir" if oid.endswith(".dir") else "")
    if actual != oid:
        raise DataMismatch(f"{label}: the DVC remote's object {oid} hashes to {actual}; it was changed")
    return content
