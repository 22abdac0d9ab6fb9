"""Profile selection and what each profile needs from the environment (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps import config
from steps.core import profiles
from tests.helpers import default_params, write_params

SERVICES_ENV = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "PREFECT_API_URL": "http://prefect:4200/api",
                "SHRINKFLOW_DVC_REMOTE": "s3://bucket/dvc", "AWS_ENDPOINT_URL": "http://minio:9000",
                "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    params = default_params()
    params["profile"] = "production"
    write_params(tmp_path, params)
    return tmp_path


def test_cli_beats_environment_beats_params(root: Path):
    assert profiles.select(root, env={})[0].name == "production"
    assert profiles.select(root, env={profiles.PROFILE_ENV: "services"}) == (profiles.PROFILES["services"],
                                                                           profiles.PROFILE_ENV)
    assert profiles.select(root, "local", env={profiles.PROFILE_ENV: "services"})[0].name == "local"


def test_unknown_profile_is_named(root: Path):
    with pytest.raises(profiles.ProfileError, match=r"SHRINKFLOW_PROFILE='staging': unknown profile; choose one of"):
        profiles.select(root, env={profiles.PROFILE_ENV: "staging"})
    params = default_params() | {"profile": "staging"}
    with pytest.raises(config.ConfigError, match="profile"):
        config.validate(params)


def test_services_needs_every_setting_and_production_no_endpoint():
    assert profiles.missing(profiles.PROFILES["services"], SERVICES_ENV) == []
    partial = {k: v for k, v in SERVICES_ENV.items() if k not in ("AWS_ENDPOINT_URL", "PREFECT_API_URL")}
    assert profiles.missing(profiles.PROFILES["services"], partial) == [
        "PREFECT_API_URL", "AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL"]
    assert profiles.missing(profiles.PROFILES["services"], partial | {"MLFLOW_S3_ENDPOINT_URL": "http://m:9000",
                                                                      "PREFECT_API_URL": "x"}) == []
    aws = {k: v for k, v in SERVICES_ENV.items() if not k.startswith("AWS_")}
    assert profiles.missing(profiles.PROFILES["production"], aws) == []
    assert profiles.missing(profiles.PROFILES["local"], {}) == []


def test_dvc_remote_must_be_an_s3_url():
    assert profiles.bucket(profiles.dvc_remote_url(SERVICES_ENV)) == "bucket"
    for bad in ("", "bucket/dvc", "s3:///dvc", "gs://bucket/dvc"):
        with pytest.raises(profiles.ProfileError, match="SHRINKFLOW_DVC_REMOTE=.*expected s3://<bucket>"):
            profiles.dvc_remote_url({"SHRINKFLOW_DVC_REMOTE": bad})


def test_redact_drops_credentials_from_urls():
    assert profiles.redact("https://user:tok3n@mlflow.example.com:8443/x") == "https://mlflow.example.com:8443/x"
    assert profiles.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
