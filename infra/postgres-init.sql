-- One PostgreSQL, two databases: MLflow's tracking/registry store and Prefect's orchestration state.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
