"""Where a result came from: the git commit of the code, and whether the checkout differed from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

UNKNOWN = "unknown"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD") or UNKNOWN


def git_dirty(root: Path) -> bool:
    """True when tracked files differ from the commit (the code that ran is not exactly `git_commit`)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return bool(status)
