"""The model registry's rules: one promotion at a time (lock), an append-only history, alias moves,
artifact identity, and the audit that re-proves a version. Built on the tracking door; never imports MLflow."""
