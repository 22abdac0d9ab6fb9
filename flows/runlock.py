"""The project run lock: one pipeline run (or sweep, scheduled run, retraining audit, `dvc repro`) per checkout.

Two runs in one checkout rewrite each other's files and read each other's params. Every command
that runs stages holds an exclusive `flock` on `.shrinkflow/run.lock` for its whole duration; the
kernel frees it when the holder dies (SIGKILL included), so no stale lock is ever cleaned up by
hand. A second run waits up to its timeout, saying who holds the lock, then refuses with
`RunLocked` (the CLI exits 75, EX_TEMPFAIL, which schedulers treat as "retry later").

Only runs in one checkout are serialised. Two checkouts (or machines) on one tracking server may
train at once; what they share is the registry, and promotion has its own lock (registry/lock.py).

Within one process the lock is re-entrant: the CLI takes it before writing `-S` overrides, and the
flow it then starts takes it again (for the runs `shrinkflow serve` starts, the flow's is the only one).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from steps.core.layout import STATE_DIR
from steps.core.locks import LockTimeout, file_lock

RUN_LOCK = f"{STATE_DIR}/run.lock"
EX_TEMPFAIL = 75
"""sysexits.h: a temporary failure; the same command may succeed later."""
_held: dict[Path, int] = {}  # lock file -> nesting depth in this process


class RunLocked(LockTimeout):
    """Another run held the project lock for longer than the timeout; the message names it."""


def holder_record() -> str:
    """Who this process is, as the lock file records it: pid, command, start time, host, user."""
    return json.dumps({"pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                       "started": datetime.now(UTC).isoformat(timespec="seconds"),
                       "host": socket.gethostname(), "user": getpass.getuser()})


def describe(record: str) -> str:
    """'pid 123 (shrinkflow run -S a=1), user@host, started 2026-12-01T03:00:00+00:00' from a holder record."""
    try:
        h = json.loads(record)
        return f"pid {h['pid']} ({h['command']}), {h['user']}@{h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return record or "another process"


@contextlib.contextmanager
def project_lock(root: Path, timeout_s: float, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the project's run lock for the block; RunLocked naming the holder after `timeout_s`."""
    path = (Path(root) / RUN_LOCK).resolve()
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(file_lock(path, timeout_s, holder_record(), what="project run lock",
                                      on_wait=on_wait, describe=describe))
    except LockTimeout as err:
        raise RunLocked(f"{err}; another run is using this checkout (try again when it has finished)") from None
    with stack:
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
