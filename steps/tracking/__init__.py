"""The only package that imports MLflow: the store, runs, the model registry and append-only records.

Callers use the names below (`tracking.open_run`, `tracking.aliases`, ...); each module behind them
does one job: `store` (which store, does it answer), `runs` (log into runs), `models` (the registry),
`events` (history and audit records, the registry-lock primitive), `scorers` (a registered model
loaded for batch scoring), `sqlite` (reading the local store without MLflow). Names resolve on first
use (PEP 562), so `import steps.tracking` costs nothing until one is needed: the no-change check of
`shrinkflow run` reads the local store without importing MLflow.
"""

from __future__ import annotations

import importlib

_MODULES = {
    "events": ("create_lock_model", "delete_registered_model", "lock_model_tags", "record_event", "record_files",
               "search_events"),
    "models": ("ModelRef", "UnknownModel", "alias_version", "aliases", "delete_alias", "download_deployable",
               "download_reference", "download_model_files", "contract_of", "generator_model", "load_predictor", "load_pyfunc",
               "log_deployable", "log_generator", "model_task", "serves_language_model",
               "log_reference", "mark_failed", "served_artifacts",
               "signature_input_shape", "model_version", "register", "set_alias", "tag_version",
               "version_exists"),
    "runs": ("PARENT_RUN_TAG", "adopt_runs", "client_run", "copy_artifacts", "download_artifacts",
             "download_if_logged", "fail_if_running", "log_dataset",
             "log_dict", "log_figure", "log_files", "log_metrics", "log_run_dataset", "log_run_dict", "log_run_figure",
             "log_run_files",
             "log_run_metrics", "log_run_params", "log_run_table", "log_table", "open_run", "run_artifact_uri",
             "run_record", "set_run_tags", "set_tags"),
    "localstore": ("local_uri", "check_store"),
    "scorers": ("BadInput", "Scorer", "load_scorer"),
    "store": ("TrackingUnavailable", "check_server", "experiment_id", "file_store_path", "record_into",
              "tracking_uri", "use_store", "user_uri"),
}
_OWNER = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_OWNER)


def __getattr__(name: str):
    if name not in _OWNER:
        raise AttributeError(f"module 'steps.tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"steps.tracking.{_OWNER[name]}"), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return __all__
