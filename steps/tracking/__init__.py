"""The only package that imports MLflow: the store, runs, the model registry and append-only records.

Callers use the names below (`tracking.open_run`, `tracking.aliases`, ...); each module behind them
does one job: `store` (which store, does it answer), `runs` (log into runs), `models` (the registry),
`events` (history and audit records, the registry-lock primitive).
"""

from steps.tracking.events import (
    create_lock_model,
    delete_registered_model,
    lock_model_tags,
    record_event,
    record_files,
    search_events,
)
from steps.tracking.models import (
    ModelRef,
    UnknownModel,
    alias_version,
    aliases,
    delete_alias,
    download_deployable,
    load_predictor,
    log_deployable,
    model_version,
    register,
    set_alias,
    tag_version,
    version_exists,
)
from steps.tracking.runs import (
    PARENT_RUN_TAG,
    adopt_runs,
    client_run,
    download_artifacts,
    log_dataset,
    log_dict,
    log_figure,
    log_files,
    log_metrics,
    log_run_dict,
    log_run_figure,
    log_run_files,
    log_run_metrics,
    log_run_params,
    log_run_table,
    log_table,
    open_run,
    run_artifact_uri,
    run_record,
    set_run_tags,
    set_tags,
)
from steps.tracking.store import (
    TrackingUnavailable,
    check_server,
    experiment_id,
    file_store_path,
    record_into,
    tracking_uri,
    use_store,
)

__all__ = [
    "PARENT_RUN_TAG", "ModelRef", "TrackingUnavailable", "UnknownModel", "adopt_runs", "alias_version", "aliases",
    "check_server", "client_run", "create_lock_model", "delete_alias", "delete_registered_model",
    "download_artifacts", "download_deployable", "experiment_id", "file_store_path", "load_predictor",
    "lock_model_tags", "log_dataset", "log_deployable", "log_dict", "log_figure", "log_files", "log_metrics",
    "log_run_dict", "log_run_figure", "log_run_files", "log_run_metrics", "log_run_params", "log_run_table",
    "log_table", "model_version", "open_run", "record_event", "record_files", "record_into", "register",
    "run_artifact_uri", "run_record", "search_events", "set_alias", "set_run_tags", "set_tags", "tag_version",
    "tracking_uri", "use_store", "version_exists",
]
