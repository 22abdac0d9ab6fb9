"""The only package that imports DVC: record and push what ran (`dvc`), fetch data by hash (`fetch`)."""

from steps.storage.dvc import (
    LOCK_FILE,
    RemoteUnavailable,
    StorageError,
    commit_stage,
    configure_s3_remote,
    data_hash,
    describe_remote,
    locked_out_hash,
    push,
    remote_description,
    use_profile,
)
from steps.storage.fetch import DataMismatch, fetch_dir

__all__ = [
    "LOCK_FILE", "DataMismatch", "RemoteUnavailable", "StorageError", "commit_stage", "configure_s3_remote",
    "data_hash", "describe_remote", "fetch_dir", "locked_out_hash", "push", "remote_description", "use_profile",
]
