"""Registry decisions that must not race, and the history that explains them.

MLflow moves an alias with one request and remembers nothing about it. A
promotion is a read-decide-write sequence (read `@champion`, compare, move
aliases), so two pipelines finishing at once could both see the same champion
and both "beat" it. Every alias move therefore happens under
`promotion_lock()`, and each decision is appended to the promotion history:
one finished MLflow run per event in the experiment `HISTORY_EXPERIMENT`,
tagged with the model name and a sequence number. It lives in the tracking
backend (SQLite file or the server's database), so it survives server
restarts and is visible to every client; runs are only ever created, never
edited, and each event names the one before it (`prev`), so a gap shows.

The lock:
- local store (`sqlite:///.../mlflow.db`): an exclusive `flock` on a file
  beside the database. Every process that can open that database can open
  the file; the kernel drops the lock when its holder dies, so no stale locks.
- server: a registered model named `LOCK_PREFIX + name` is the mutex. Its
  name is the primary key of the registry's table, so of any number of
  concurrent creates from any machine exactly one succeeds; the lock needs
  nothing beyond the MLflow server everyone already reaches. A crashed
  holder cannot release it, so it carries a lease (`expires`) after which a
  waiter may delete it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from steps import tracking
from steps.names import Alias, Tag

HISTORY_EXPERIMENT = "shrinkflow-promotion-history"
LOCK_PREFIX = "shrinkflow-lock."
TRIGGER_ENV = "SHRINKFLOW_TRIGGER"
"""Set by whoever starts a promotion (the Prefect flow, the CLI) to say what triggered it."""
POLL_S = 0.2  # how often a waiter retries a held lock


class LockTimeout(TimeoutError):
    """Another promotion held the registry lock for longer than the timeout; names the holder."""


class RegistryError(ValueError):
    """A registry request that cannot be carried out (no such alias or version); names it."""


def actor() -> str:
    """Who/what acts: the trigger set by the caller, else the user and host running this process."""
    return os.environ.get(TRIGGER_ENV) or f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"


# --- the lock -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def promotion_lock(model_name: str, timeout_s: float, lease_s: float | None = None) -> Iterator[None]:
    """Hold the registry lock for `model_name` (use after tracking.use_store)."""
    db = tracking.file_store_path()
    if db is not None:
        with _file_lock(db.with_name(f"{db.name}.{model_name}.lock"), timeout_s):
            yield
    else:
        with _registry_lock(LOCK_PREFIX + model_name, timeout_s, lease_s or timeout_s):
            yield


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    raise LockTimeout(f"registry lock {path} still held after {timeout_s:g} s by "
                                      f"{fh.read().strip() or 'another process'}") from None
                time.sleep(POLL_S)
        fh.seek(0)
        fh.truncate()
        fh.write(actor())
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _registry_lock(name: str, timeout_s: float, lease_s: float) -> Iterator[None]:
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while not tracking.create_lock_model(name, {"holder": actor(), "token": token,
                                                "expires": f"{time.time() + lease_s:.3f}"}):
        held = tracking.lock_model_tags(name)
        if held is not None and float(held.get("expires", "0")) < time.time():
            tracking.delete_registered_model(name)  # lease ran out: its holder died without releasing
            continue
        if time.monotonic() >= deadline:
            holder = held.get("holder", "unknown") if held else "unknown"
            raise LockTimeout(f"registry lock {name!r} still held after {timeout_s:g} s by {holder}")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        held = tracking.lock_model_tags(name)
        if held is not None and held.get("token") == token:  # never release a lock that was broken and retaken
            tracking.delete_registered_model(name)


# --- history ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One registry decision: what moved where, and why."""

    model_name: str
    kind: str  # promoted | rejected | rollback | forced
    version: int
    reason: str
    champion_before: int | None
    champion_after: int | None
    moves: list[str] = field(default_factory=list)  # e.g. "champion: 1 -> 2"
    gates: dict[str, str] = field(default_factory=dict)  # name -> "pass 0.91 (limit 0.88)"
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)  # git commit, data hash, params hash, ...
    trigger: str = field(default_factory=actor)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


def _version_str(v: int | None) -> str:
    return "none" if v is None else str(v)


def record(event: Event) -> str:
    """Append `event` to the history (call under the lock, which orders the sequence numbers)."""
    past = events(event.model_name)
    seq = len(past) + 1
    tags = {
        Tag.HISTORY_MODEL: event.model_name,
        Tag.HISTORY_SEQ: str(seq),
        Tag.HISTORY_PREV: past[-1]["run_id"] if past else "none",
        Tag.HISTORY_EVENT: event.kind,
        Tag.HISTORY_VERSION: str(event.version),
        Tag.HISTORY_CHAMPION_BEFORE: _version_str(event.champion_before),
        Tag.HISTORY_CHAMPION_AFTER: _version_str(event.champion_after),
        Tag.REASON: event.reason[:4000],
        Tag.TRIGGER: event.trigger,
        "shrinkflow.moves": "; ".join(event.moves) or "none",
        "shrinkflow.time": event.time,
        **{f"shrinkflow.gate.{k}": v for k, v in event.gates.items()},
        **event.lineage,
    }
    document = {"seq": seq, **event.__dict__}
    return tracking.record_event(HISTORY_EXPERIMENT, f"{event.model_name}#{seq} {event.kind} v{event.version}",
                                 tags, event.metrics, document)


def events(model_name: str) -> list[dict]:
    """The history of `model_name`, in order: one dict per event."""
    runs = tracking.search_events(HISTORY_EXPERIMENT, f"tags.`{Tag.HISTORY_MODEL}` = '{model_name}'")
    out = []
    for run in runs:
        t = run.data.tags
        out.append({
            "seq": int(t[Tag.HISTORY_SEQ]), "time": t.get("shrinkflow.time", ""), "event": t[Tag.HISTORY_EVENT],
            "version": int(t[Tag.HISTORY_VERSION]), "champion_before": t[Tag.HISTORY_CHAMPION_BEFORE],
            "champion_after": t[Tag.HISTORY_CHAMPION_AFTER], "moves": t.get("shrinkflow.moves", ""),
            "reason": t.get(Tag.REASON, ""), "trigger": t.get(Tag.TRIGGER, ""), "prev": t.get(Tag.HISTORY_PREV),
            "run_id": run.info.run_id,
        })
    return sorted(out, key=lambda e: e["seq"])


# --- alias moves ----------------------------------------------------------------------------------------------------


def take_champion(model_name: str, version: int) -> list[str]:
    """`version` becomes champion, the replaced champion becomes `previous`; returns the moves made."""
    current = tracking.aliases(model_name)
    moves = []
    old = current.get(Alias.CHAMPION)
    if old is not None and old != version:
        tracking.set_alias(model_name, Alias.PREVIOUS, old)
        moves.append(f"{Alias.PREVIOUS}: {_version_str(current.get(Alias.PREVIOUS))} -> {old}")
    tracking.set_alias(model_name, Alias.CHAMPION, version)
    moves.append(f"{Alias.CHAMPION}: {_version_str(old)} -> {version}")
    if current.get(Alias.CHALLENGER) == version:  # a challenger that wins is no longer one
        tracking.delete_alias(model_name, Alias.CHALLENGER)
        moves.append(f"{Alias.CHALLENGER}: {version} -> none")
    return moves


def become_challenger(model_name: str, version: int) -> list[str]:
    before = tracking.aliases(model_name).get(Alias.CHALLENGER)
    tracking.set_alias(model_name, Alias.CHALLENGER, version)
    return [f"{Alias.CHALLENGER}: {_version_str(before)} -> {version}"]


def decision_tags(kind: str, reason: str, when: str, trigger: str) -> dict[str, str]:
    """Version tags saying the latest decision about it (the history keeps all of them)."""
    return {Tag.DECISION: kind, Tag.REASON: reason[:4000], Tag.DECIDED_AT: when, Tag.TRIGGER: trigger}


def rollback(model_name: str, reason: str, timeout_s: float) -> Event:
    """Move `champion` back to the version behind `previous`; record it."""
    with promotion_lock(model_name, timeout_s):
        current = tracking.aliases(model_name)
        if Alias.PREVIOUS not in current:
            raise RegistryError(f"{model_name}: no @{Alias.PREVIOUS} version to roll back to "
                                f"(aliases: {json.dumps(current)})")
        target, demoted = current[Alias.PREVIOUS], current.get(Alias.CHAMPION)
        tracking.set_alias(model_name, Alias.CHAMPION, target)
        # `previous` is consumed: rolling back twice must not flip-flop between two versions.
        tracking.delete_alias(model_name, Alias.PREVIOUS)
        moves = [f"{Alias.CHAMPION}: {_version_str(demoted)} -> {target}", f"{Alias.PREVIOUS}: {target} -> none"]
        event = Event(model_name, "rollback", target, reason, demoted, target, moves)
        tracking.tag_version(model_name, target, decision_tags("rollback-restored", reason, event.time, event.trigger))
        if demoted is not None:
            tracking.tag_version(model_name, demoted,
                                 decision_tags("rolled-back", reason, event.time, event.trigger))
        record(event)
        return event


def force_promote(model_name: str, version: int, reason: str, timeout_s: float) -> Event:
    """A human override: `version` takes champion without gates; recorded as forced, with the reason."""
    if not reason.strip():
        raise RegistryError("a forced promotion needs a reason (--reason)")
    tracking.model_version(model_name, version)  # raises naming the version when it does not exist
    with promotion_lock(model_name, timeout_s):
        before = tracking.aliases(model_name).get(Alias.CHAMPION)
        moves = take_champion(model_name, version)
        event = Event(model_name, "forced", version, reason, before, version, moves, gates={"all": "skipped (forced)"})
        tracking.tag_version(model_name, version, decision_tags("forced", reason, event.time, event.trigger))
        record(event)
        return event


# --- artifact identity ----------------------------------------------------------------------------------------------

MODEL_ARTIFACTS = "model"  # the registered MLflow model (torch.export), as downloaded from models:/NAME/VERSION
FILE_ARTIFACTS = "model_files"  # the safetensors weights + JSON spec, logged in the promote run
DEPLOY_ARTIFACTS = tracking.DEPLOY_ARTIFACTS  # the deployable ONNX files (fp32, int8), logged in the promote run


def artifact_digests(model_name: str, version: int, run_id: str) -> dict[str, str]:
    """{artifact path: sha256} of everything a version is made of, as the registry serves it now."""
    import tempfile

    from steps.hashing import sha256

    with tempfile.TemporaryDirectory(prefix="shrinkflow-artifacts-") as tmp:
        places = {
            MODEL_ARTIFACTS: tracking.download_artifacts(f"models:/{model_name}/{version}", Path(tmp) / "m"),
            **{prefix: tracking.download_artifacts(tracking.run_artifact_uri(run_id, prefix), Path(tmp) / prefix)
               for prefix in (FILE_ARTIFACTS, DEPLOY_ARTIFACTS)},
        }
        return {f"{prefix}/{p.relative_to(base).as_posix()}": sha256(p)
                for prefix, base in places.items() for p in sorted(base.rglob("*")) if p.is_file()}


def digest_of(digests: dict[str, str]) -> str:
    """One sha256 over the {path: sha256} record, for a version tag (so the record itself is checked too)."""
    import hashlib

    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
