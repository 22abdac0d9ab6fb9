"""What a person finds opening shrinkflow's MLflow experiment: a model-training experiment, and the pipeline's
run showing the stages' tables and plots (copied by `copy_artifacts`)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from steps import tracking  # noqa: E402
from steps.tracking.store import EXPERIMENT_KIND_TAG, MODEL_TRAINING  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One project store for the module (creating one migrates a SQLite database: seconds); each test uses its own
    experiment names in it."""
    root = tmp_path_factory.mktemp("store")
    tracking.use_store(root)
    return root


def test_a_new_experiment_is_a_model_training_one(store):
    tracking.use_store(store)
    experiment = MlflowClient().get_experiment(tracking.experiment_id("fresh"))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"


def test_an_earlier_experiment_without_a_kind_gets_it_and_a_persons_choice_stays(store):
    tracking.use_store(store)
    older = mlflow.create_experiment("made-before")  # as shrinkflow made them before it set a kind
    chosen = mlflow.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert tracking.experiment_id("made-before") == older and tracking.experiment_id("chosen") == chosen
    assert MlflowClient().get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert MlflowClient().get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_copied_artifacts_arrive_at_their_paths_tables_as_tables(store):
    tracking.use_store(store)
    with tracking.client_run(store, "copies", "stage", {}) as source, \
            tracking.client_run(store, "copies", "pipeline", {}) as target:
        table = pd.DataFrame({"model": ["teacher", "student"], "accuracy": [0.91, 0.88]})
        tracking.log_run_table(source, table, "comparison.json")
        figure = plt.figure()
        tracking.log_run_figure(source, figure, "plots/pareto.png")
        plt.close(figure)
        copied = tracking.copy_artifacts(source, target, ["comparison.json", "plots/pareto.png", "frontier.png"])
    client = MlflowClient()
    assert copied == ["comparison.json", "plots/pareto.png"]  # a path the stage did not log is left out
    assert [a.path for a in client.list_artifacts(target, "plots")] == ["plots/pareto.png"]
    run = client.get_run(target)
    assert client.load_table(run.info.experiment_id, "comparison.json", [target]).equals(table)
    assert '"type": "table"' in run.data.tags["mlflow.loggedArtifacts"]  # shown as a table in the UI
