"""The registered text model as production calls it: raw strings in (a list, or a table with the text column),
class names and probabilities out, tokenised by the version's own tokenizer.json as the data stage tokenised;
the version also holds the student's save_pretrained folder, which stock transformers reloads."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.types import DataType

from steps import tracking
from steps.core import datasets
from steps.core.layout import model_dir, onnx_path
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from steps.serving.classifier import HF_ARTIFACT
from steps.serving.contract import Contract
from tests.serving.textmodel import text_project

NAME = "mail"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> tuple[Path, int]:
    torch.set_num_threads(1)
    root = text_project(tmp_path_factory.mktemp("text"))
    tracking.use_store(root)
    contract = datasets.contract(root)
    texts, _ = datasets.raw_texts(root, "test")
    tokenizer = datasets.tokenizer_file(root, datasets.read_manifest(root))
    with mlflow.start_run(experiment_id=tracking.experiment_id("served-text")):
        version = tracking.register(root / onnx_path(ModelRole.STUDENT), contract,
                                    pd.DataFrame({contract.text_column: texts[:3]}), NAME,
                                    text_files=(tokenizer, root / model_dir(ModelRole.STUDENT)))
    return root, version


@pytest.fixture(scope="module")
def served(registered):
    root, version = registered
    tracking.use_store(root)
    return mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")


def torch_labels(root: Path) -> np.ndarray:
    """The student's classes on the processed (tokenised) test split, in PyTorch."""
    model, _ = load_model(root, ModelRole.STUDENT)
    with torch.no_grad():
        return model(**datasets.load_splits(root, ("test",))["test"].x).argmax(1).numpy()


def test_raw_strings_get_class_names_and_probabilities_that_agree_with_pytorch(registered, served):
    root, _ = registered
    texts, y = datasets.raw_texts(root, "test")
    answers = served.predict(texts)  # a list of raw strings, longer than max_length some of them
    classes = ["ham", "spam"]
    assert list(answers.columns) == ["label", "class_index", *classes]
    assert np.allclose(answers[classes].sum(axis=1), 1.0)
    expected = torch_labels(root)
    assert answers["class_index"].tolist() == expected.tolist()
    assert answers["label"].tolist() == [classes[i] for i in expected]
    assert (expected == y).mean() >= 0.9  # a trained model: the two classes share no word
    table = served.predict(pd.DataFrame({"body": texts, "other": range(len(texts))}))  # the text column by name
    pd.testing.assert_frame_equal(table, answers)
    one = served.predict(np.array(texts[:4]))  # an array, as MLflow's scoring server makes of a JSON list
    pd.testing.assert_frame_equal(one, answers.iloc[:4])
    logits = served.predict(texts[:2], params={"output": "logits"})
    assert list(logits.columns) == classes and logits.to_numpy().argmax(1).tolist() == expected[:2].tolist()


@pytest.mark.parametrize(("bad", "named"), [
    (["fine words", 7], "text 1: expected a string, got a int"),
    (["fine words", None], "text 1: expected a string, got a missing value"),
    (["fine words", "   \n"], "text 1: empty (only whitespace)"),
    (pd.DataFrame({"subject": ["a"], "from": ["b"]}), "missing the text column 'body': the model received the "
                                                      "column(s) ['subject']"),
    (pd.DataFrame({"subject": ["a"], "body": ["b"]}), "whose first column is 'body'"),
])
def test_bad_input_is_refused_naming_what_is_wrong(served, bad, named):
    with pytest.raises(MlflowException) as err:
        served.predict(bad)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert named in err.value.message and "raw texts" in err.value.message


def test_the_version_holds_the_contract_and_a_folder_stock_transformers_reloads(registered, served, tmp_path):
    from transformers import AutoModelForSequenceClassification

    root, version = registered
    contract = Contract.from_metadata(served.metadata.metadata)
    manifest = datasets.read_manifest(root)
    assert (contract.kind, contract.text_column, contract.max_length) == ("text", "body", 16)
    assert contract.tokenizer_sha256 == manifest["tokenizer"]["sha256"]
    texts, _ = datasets.raw_texts(root, "test")  # the test split keeps its texts as written, for the served model
    assert len(texts) == manifest["files"]["test.npz"]["rows"] and manifest["text_column"] == "body"
    assert set(texts) <= set(pd.read_csv(root / "mail.csv")["body"])
    assert served.metadata.get_input_schema().input_types() == [DataType.string]
    folder = tracking.served_artifacts(NAME, version, tmp_path)[HF_ARTIFACT]
    assert folder.is_dir() and folder.name == Path(model_dir(ModelRole.STUDENT)).name
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    stock.eval()
    test = datasets.load_splits(root, ("test",))["test"]
    with torch.no_grad():
        assert stock(**test.x).logits.argmax(1).numpy().tolist() == torch_labels(root).tolist()
    assert stock.config.id2label == {0: "ham", 1: "spam"}
    assert (folder / "tokenizer.json").read_bytes() == datasets.tokenizer_file(root, manifest).read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_shrinkflow_predict_scores_a_table_of_texts_and_names_the_blank_rows(registered, served, suffix, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    root, version = registered
    texts, _ = datasets.raw_texts(root, "test")
    bodies = [*texts[:5], "  ", *texts[5:], "NA"]  # "NA" is a message, as the data stage reads it, not a gap
    rows = pd.DataFrame({"id": [f"m{i:02d}" for i in range(len(bodies))], "body": bodies, "sender": "someone"})
    path = tmp_path / f"incoming{suffix}"
    {".csv": lambda: rows.to_csv(path, index=False), ".parquet": lambda: rows.to_parquet(path),
     ".jsonl": lambda: rows.to_json(path, orient="records", lines=True)}[suffix]()
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, ["predict", f"models:/{NAME}/{version}", str(path), "-o", str(out),
                                      "--id-column", "id", "--on-error", "skip", "--batch-size", "4",
                                      "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "m05" in result.output and "blank" in result.output
    scores = pd.read_parquet(out)
    assert scores["id"].tolist() == [i for i in rows["id"] if i != "m05"]
    assert scores["class_index"].tolist() == served.predict([*texts, "NA"])["class_index"].tolist()


@pytest.mark.integration
def test_mlflows_scoring_server_answers_raw_texts_over_http(registered, served, tmp_path):
    """`shrinkflow serve-model`: a JSON list of strings, and a table in dataframe_split form, as a client sends."""
    from tests.serving.test_http import post
    from tests.servers import scoring_server

    root, version = registered
    texts, _ = datasets.raw_texts(root, "test")
    expected = served.predict(texts)["label"].tolist()
    with scoring_server(root, f"{NAME}/{version}", tmp_path) as server:
        status, body = post(server.url, {"inputs": texts})
        assert status == 200 and [a["label"] for a in body["predictions"]] == expected
        status, body = post(server.url, {"dataframe_split": {"columns": ["body"], "data": [[t] for t in texts[:3]]}})
        assert status == 200 and [a["label"] for a in body["predictions"]] == expected[:3]
        status, body = post(server.url, {"inputs": ["fine words", " "]})
        assert status == 400 and "text 1: empty" in body["message"]


def test_served_tokenisation_is_the_data_stages_and_refuses_another_tokenizer(registered, tmp_path):
    from steps.serving.texts import TextEncoder

    root, _ = registered
    manifest = datasets.read_manifest(root)
    contract = datasets.contract(root)
    tokenizer = datasets.tokenizer_file(root, manifest)
    texts, _ = datasets.raw_texts(root, "test")
    ids, mask, _ = datasets.load_text(root, "test", manifest)
    feeds = TextEncoder(tokenizer, contract)(texts)  # some of them longer than max_length: truncated alike
    assert np.array_equal(feeds["input_ids"], ids) and np.array_equal(feeds["attention_mask"], mask)
    assert feeds["input_ids"].dtype == feeds["attention_mask"].dtype == np.int64
    other = tmp_path / "tokenizer.json"
    other.write_bytes(tokenizer.read_bytes().replace(b"[UNK]", b"[UNKNOWN]", 1))
    with pytest.raises(ValueError, match=rf"tokenizer.json: sha256 \w+, but the model's contract was made with the "
                                         rf"tokenizer of sha256 {contract.tokenizer_sha256}"):
        TextEncoder(other, contract)


def test_raw_texts_keep_every_character_as_written():
    from steps.sources.tokens import pack_texts, unpack_texts

    texts = np.array(["naïve café", "🍕 pizza\nnew line", "  spaced  ", "日本語のテキスト"], dtype=object)
    data, offsets = pack_texts(texts)
    assert data.dtype == np.uint8 and offsets.tolist()[0] == 0 and offsets[-1] == len(data)
    assert unpack_texts(data, offsets) == texts.tolist()
