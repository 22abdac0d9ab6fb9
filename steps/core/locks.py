"""Exclusive locks on a file (`flock`): the kernel frees them when the holder dies, so none goes stale.

The holder writes who it is into the file, so a waiter can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_S = 0.2  # how often a waiter retries a held lock


class LockTimeout(TimeoutError):
    """The lock was still held by another process after the timeout; the message names the holder."""


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float, holder: str, what: str = "lock",
              on_wait: Callable[[str], None] | None = None,
              describe: Callable[[str], str] = lambda text: text or "another process") -> Iterator[None]:
    """Hold an exclusive flock on `path` for the block, waiting up to `timeout_s`.

    `holder` is written into the file while held; `on_wait(description of the holder)` is called
    once when the lock is busy, so a caller can tell its user whom it waits for. LockTimeout
    names the holder as `describe` renders what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                current = describe(fh.read().strip())
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{what} {path} still held after {timeout_s:g} s by {current}") from None
                if not waited and on_wait is not None:
                    on_wait(current)
                waited = True
                time.sleep(POLL_S)
        fh.seek(0)
        fh.truncate()
        fh.write(holder)
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
