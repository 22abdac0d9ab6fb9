"""Writing outputs so that no partial file ever looks complete: temp name, then rename."""

from __future__ import annotations

import json
import os
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
