"""Moving aliases: champion, challenger and previous; rollback and forced promotion, each recorded.

Every move happens under the registry lock (lock.py) and is appended to the history (history.py).
"""

from __future__ import annotations

import json

from steps import tracking
from steps.core.names import Alias, Tag
from steps.registry import history
from steps.registry.history import version_str
from steps.registry.lock import promotion_lock, this_process


class RegistryError(ValueError):
    """A registry request that cannot be carried out (no such alias or version); names it."""


def take_champion(model_name: str, version: int) -> list[str]:
    """`version` becomes champion, the replaced champion becomes `previous`; returns the moves made."""
    current = tracking.aliases(model_name)
    moves = []
    old = current.get(Alias.CHAMPION)
    if old is not None and old != version:
        tracking.set_alias(model_name, Alias.PREVIOUS, old)
        moves.append(f"{Alias.PREVIOUS}: {version_str(current.get(Alias.PREVIOUS))} -> {old}")
    tracking.set_alias(model_name, Alias.CHAMPION, version)
    moves.append(f"{Alias.CHAMPION}: {version_str(old)} -> {version}")
    if current.get(Alias.CHALLENGER) == version:  # a challenger that wins is no longer one
        tracking.delete_alias(model_name, Alias.CHALLENGER)
        moves.append(f"{Alias.CHALLENGER}: {version} -> none")
    return moves


def become_challenger(model_name: str, version: int) -> list[str]:
    before = tracking.aliases(model_name).get(Alias.CHALLENGER)
    tracking.set_alias(model_name, Alias.CHALLENGER, version)
    return [f"{Alias.CHALLENGER}: {version_str(before)} -> {version}"]


def decision_tags(kind: str, reason: str, when: str, trigger: str) -> dict[str, str]:
    """Version tags saying the latest decision about it (the history keeps all of them)."""
    return {Tag.DECISION: kind, Tag.REASON: reason[:4000], Tag.DECIDED_AT: when, Tag.TRIGGER: trigger}


def rollback(model_name: str, reason: str, timeout_s: float, trigger: str = "") -> history.Event:
    """Move `champion` back to the version behind `previous`; record it as done by `trigger` (default: this
    process)."""
    trigger = trigger or this_process()
    with promotion_lock(model_name, timeout_s, trigger):
        current = tracking.aliases(model_name)
        if Alias.PREVIOUS not in current:
            raise RegistryError(f"{model_name}: no @{Alias.PREVIOUS} version to roll back to "
                                f"(aliases: {json.dumps(current)})")
        target, demoted = current[Alias.PREVIOUS], current.get(Alias.CHAMPION)
        tracking.set_alias(model_name, Alias.CHAMPION, target)
        # `previous` is consumed: rolling back twice must not flip-flop between two versions.
        tracking.delete_alias(model_name, Alias.PREVIOUS)
        moves = [f"{Alias.CHAMPION}: {version_str(demoted)} -> {target}", f"{Alias.PREVIOUS}: {target} -> none"]
        event = history.Event(model_name=model_name, kind="rollback", version=target, reason=reason,
                              champion_before=demoted, champion_after=target, moves=moves, trigger=trigger)
        tracking.tag_version(model_name, target, decision_tags("rollback-restored", reason, event.time, event.trigger))
        if demoted is not None:
            tracking.tag_version(model_name, demoted,
                                 decision_tags("rolled-back", reason, event.time, event.trigger))
        history.record(event)
        return event


def force_promote(model_name: str, version: int, reason: str, timeout_s: float, trigger: str = "") -> history.Event:
    """A human override: `version` takes champion without gates; recorded as forced by `trigger` (default: this
    process), with the reason."""
    if not reason.strip():
        raise RegistryError("a forced promotion needs a reason (--reason)")
    tracking.model_version(model_name, version)  # raises naming the version when it does not exist
    trigger = trigger or this_process()
    with promotion_lock(model_name, timeout_s, trigger):
        before = tracking.aliases(model_name).get(Alias.CHAMPION)
        moves = take_champion(model_name, version)
        event = history.Event(model_name=model_name, kind="forced", version=version, reason=reason,
                              champion_before=before, champion_after=version, moves=moves,
                              gates={"all": "skipped (forced)"}, trigger=trigger)
        tracking.tag_version(model_name, version, decision_tags("forced", reason, event.time, event.trigger))
        history.record(event)
        return event
