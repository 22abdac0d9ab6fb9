"""The registry lock: promotions, rollbacks and forced promotions of one model happen one at a time.

MLflow moves an alias with one request and remembers nothing about it. A promotion is a
read-decide-write sequence (read `@champion`, compare, move aliases), so two pipelines finishing
at once could both see the same champion and both "beat" it. Every alias move therefore happens
under `promotion_lock()`:
- local store (`sqlite:///.../mlflow.db`): an exclusive `flock` on a file beside the database.
  Every process that can open that database can open the file; the kernel drops the lock when its
  holder dies, so no stale locks.
- server: a registered model named `LOCK_PREFIX + name` is the mutex. Its name is the primary key
  of the registry's table, so of any number of concurrent creates from any machine exactly one
  succeeds; the lock needs nothing beyond the MLflow server everyone already reaches. A crashed
  holder cannot release it, so it carries a lease (`expires`) after which a waiter may delete it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
import uuid
from collections.abc import Iterator

from steps import tracking
from steps.core.locks import POLL_S, LockTimeout, file_lock

LOCK_PREFIX = "shrinkflow-lock."

__all__ = ["LOCK_PREFIX", "LockTimeout", "promotion_lock", "this_process"]


def this_process() -> str:
    """Who acts when the caller names no trigger: the user and host running this process."""
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"


@contextlib.contextmanager
def promotion_lock(model_name: str, timeout_s: float, holder: str = "",
                   lease_s: float | None = None) -> Iterator[None]:
    """Hold the registry lock for `model_name` (use after tracking.use_store); `holder` (default: this process)
    is what a waiter reads about who holds it."""
    db, holder = tracking.file_store_path(), holder or this_process()
    if db is not None:
        with file_lock(db.with_name(f"{db.name}.{model_name}.lock"), timeout_s, holder, what="registry lock"):
            yield
    else:
        with _registry_lock(LOCK_PREFIX + model_name, timeout_s, lease_s or timeout_s, holder):
            yield


@contextlib.contextmanager
def _registry_lock(name: str, timeout_s: float, lease_s: float, holder: str) -> Iterator[None]:
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while not tracking.create_lock_model(name, {"holder": holder, "token": token,
                                                "expires": f"{time.time() + lease_s:.3f}"}):
        held = tracking.lock_model_tags(name)
        if held is not None and float(held.get("expires", "0")) < time.time():
            tracking.delete_registered_model(name)  # lease ran out: its holder died without releasing
            continue
        if time.monotonic() >= deadline:
            by = held.get("holder", "unknown") if held else "unknown"
            raise LockTimeout(f"registry lock {name!r} still held after {timeout_s:g} s by {by}")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        held = tracking.lock_model_tags(name)
        if held is not None and held.get("token") == token:  # never release a lock that was broken and retaken
            tracking.delete_registered_model(name)
