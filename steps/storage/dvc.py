"""DVC's write side: record what ran (`dvc commit`), push it, configure remotes, read recorded hashes.

The Prefect flow runs the stages itself, then records each one with the
equivalent of `dvc commit -f <stage>`, so dvc.lock holds exactly what ran and
`dvc repro` afterwards finds nothing to do.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import yaml

from steps.core import environment
from steps.core.layout import DATA_DIR
from steps.core.profiles import DVC_REMOTE_NAME, Profile, dvc_remote_url, require, s3_endpoint

environment.apply_defaults()  # DVC reads DVC_NO_ANALYTICS when it starts

LOCK_FILE = "dvc.lock"


class StorageError(RuntimeError):
    """DVC could not record or push; the message names the stage or remote."""


class RemoteUnavailable(StorageError, ConnectionError):
    """The DVC remote did not answer (a ConnectionError, so callers may retry it)."""


@contextlib.contextmanager
def _repo(root: Path):
    """The DVC repo at `root`, with the working directory there too: DVC resolves stage
    names and output paths against the current directory, not the repo it was given."""
    from dvc.repo import Repo

    _dvc_logs_through_the_application()
    with contextlib.chdir(root), Repo(str(root)) as repo:
        yield repo


DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")


def _dvc_logs_through_the_application() -> None:
    """Importing DVC (`dvc.logger.setup()`) gives its loggers handlers of their own, writing to stdout and stderr,
    while their records also propagate to the root logger: under Prefect, whose handler is on the root, every
    DVC line ("Updating lock file 'dvc.lock'") was printed twice, raw and formatted. DVC's own handlers go, so
    its lines are printed once, by whatever the application set up (Prefect's log, a stage's stderr).
    (Setting the level at import, as before, did nothing: DVC's import sets it back to INFO.)"""
    from dvc.logger import LoggerHandler

    for name in DVC_LOGGERS:
        dvc_logger = logging.getLogger(name)
        for handler in [h for h in dvc_logger.handlers if isinstance(h, LoggerHandler)]:
            dvc_logger.removeHandler(handler)


def commit_stage(root: Path, stage_name: str) -> None:
    """Hash the stage's deps and outs into dvc.lock and the local cache."""
    from dvc.exceptions import DvcException

    try:
        with _repo(root) as repo:
            repo.commit(stage_name, force=True)
    except DvcException as err:
        raise StorageError(f"dvc commit {stage_name} failed in {root}: {err}") from err


def configure_s3_remote(root: Path, name: str, url: str, endpoint: str | None) -> None:
    """Write remote `name` (`url`, `endpoint`) into DVC's *local* config, `.dvc/config.local`.

    That file is git-ignored: endpoints and buckets come from the environment of whoever runs,
    never from committed files. Credentials are not written at all; DVC's S3 client reads them
    from the environment (AWS_ACCESS_KEY_ID, ...) like boto3 does.
    """
    from dvc.exceptions import DvcException

    remote = {"url": url, **({"endpointurl": endpoint} if endpoint else {})}
    try:
        with _repo(root) as repo, repo.config.edit("local") as conf:
            conf["remote"][name] = remote
    except DvcException as err:
        raise StorageError(f"cannot configure DVC remote '{name}' ({url}) in {root}: {err}") from err


def push(root: Path, remote: str | None = None) -> int:
    """Push cached outputs to `remote` (default: DVC's default remote); returns how many files were sent."""
    from dvc.exceptions import DvcException

    where = f"'{remote}'" if remote else "its default remote"
    try:
        with _repo(root) as repo:
            where = describe_remote(repo, remote)
            return int(repo.push(remote=remote))
    except Exception as err:
        # DVC wraps some transport errors in its own exceptions and lets others (botocore's) through.
        cause = err.__cause__ if isinstance(err, DvcException) else err
        if _is_connection_error(cause):
            raise RemoteUnavailable(f"DVC remote {where} is unreachable: {cause}") from err
        if isinstance(err, DvcException):
            raise StorageError(f"dvc push from {root} to {where} failed: {err}") from err
        raise


def remote_description(root: Path, remote: str | None = None) -> str:
    """'name (url, endpoint ...)' as DVC resolves it; StorageError when it is not configured."""
    with _repo(root) as repo:
        return describe_remote(repo, remote)


def describe_remote(repo, remote: str | None = None) -> str:
    """'name (url, endpoint ...)'; no credentials (they live in the environment)."""
    name = remote or repo.config["core"].get("remote")
    if not name:
        raise StorageError(f"{repo.root_dir}: no default DVC remote configured (dvc remote add -d NAME URL)")
    if name not in repo.config["remote"]:
        raise StorageError(f"{repo.root_dir}: DVC remote '{name}' is not configured")
    settings = repo.config["remote"][name]
    endpoint = settings.get("endpointurl")
    return f"'{name}' ({settings['url']}{f', endpoint {endpoint}' if endpoint else ''})"


def _is_connection_error(err: BaseException | None) -> bool:
    """Builtin connection errors, and botocore's, which S3 remotes raise and which are not builtin."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    try:
        from botocore.exceptions import ConnectionClosedError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # no S3 support installed: nothing of botocore's can be raised either
        return False
    # A connection dropped mid-request is as transient as one refused (not a subclass in botocore).
    return isinstance(err, (BotoConnectionError, ConnectionClosedError))


def locked_out_hash(root: Path, path: str) -> str | None:
    """The hash dvc.lock records for output `path` (e.g. 'abc….dir'), or None when not recorded."""
    lock = Path(root) / LOCK_FILE
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for entry in stages.values():
        for out in entry.get("outs", []):
            if out.get("path") == path:
                return out.get("md5")
    return None


def data_hash(root: Path) -> str | None:
    """DVC's hash of the processed data directory: the data identity used in tags and audits."""
    return locked_out_hash(root, DATA_DIR)


def use_profile(root: Path, profile: Profile) -> str | None:
    """Make the project use `profile`; returns the DVC remote to push to (None: DVC's default remote).

    The services profiles write their S3 remote into DVC's local config from the environment, so
    plain `dvc push -r s3` / `dvc pull -r s3` work afterwards too. MLflow and Prefect need nothing
    here: both read their server URLs from the environment.
    """
    if not profile.uses_services:
        return None
    require(profile)
    configure_s3_remote(root, DVC_REMOTE_NAME, dvc_remote_url(), s3_endpoint())
    return DVC_REMOTE_NAME
