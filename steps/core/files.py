"""Writing outputs so that no partial file ever looks complete: temp name, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class OutputWriteError(OSError):
    """An output could not be written (disk full, read-only folder, ...); the message names the file."""


def atomic_write(path: Path, write: Callable[[Path], object],
                 write_errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """Call `write(tmp_path)`, then rename tmp_path onto `path`.

    `write_errors` are the failures reported as OutputWriteError naming `path` (a library may report a
    full disk as its own type: safetensors does). The temp file never outlives a failure.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, write_errors):
            raise OutputWriteError(f"cannot write {path}: {getattr(err, 'strerror', None) or err}") from err
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def atomic_write_dir(path: Path, write: Callable[[Path], object],
                     write_errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """Call `write(tmp_dir)` on an empty temporary folder beside `path`, then swap it in for `path`.

    A folder cannot be renamed over another, so a folder already at `path` is first renamed aside and removed
    after the swap: a crash between the two renames leaves no folder at `path` (missing, which the next run
    redoes), never a half-written one. The temporary folder never outlives a failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        write(tmp)
        if path.is_dir() and not path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if path.exists() or path.is_symlink():
                path.unlink()  # a file where the folder goes (an older layout): replaced
            os.replace(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, write_errors):
            raise OutputWriteError(f"cannot write {path}: {getattr(err, 'strerror', None) or err}") from err
        raise
