"""The registered champion behind MLflow's real scoring server (`shrinkflow serve-model`), called over HTTP with
what a client has: raw pixel values and encoded PNGs, never the pipeline's normalisation."""

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steps.core.datasets import raw_split
from steps.core.layout import REPORT
from steps.core.names import ModelRole
from tests.helpers import shrinkflow
from tests.servers import scoring_server

pytestmark = pytest.mark.integration


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def served(_snapshots, stage_params, tmp_path_factory):
    name = stage_params.promote.model_name
    root = _snapshots.restore("promote")
    with scoring_server(root, name, tmp_path_factory.mktemp("scoring")) as server:
        yield root, server.url


def test_raw_pixels_over_http_give_the_evaluated_accuracy_with_class_names(served):
    root, url = served
    pixels, labels = raw_split(root, "test")  # uint8 0-255, as the data's owner has it
    status, body = post(url, {"inputs": pixels[:, 0].tolist()})
    assert status == 200
    answers = body["predictions"]
    manifest = json.loads((root / "data/processed/manifest.json").read_text())
    predicted = np.array([a["class_index"] for a in answers])
    assert [a["label"] for a in answers] == [manifest["classes"][i] for i in predicted]
    evaluated = json.loads((root / REPORT).read_text())["models"][ModelRole.STUDENT]["accuracy"]
    assert int((predicted == labels).sum()) == round(evaluated * len(labels))
    # encoded PNGs, base64 in JSON, get the same answers as their pixels
    status, body = post(url, {"inputs": [png_base64(p) for p in pixels[:16, 0]]})
    assert status == 200 and [a["class_index"] for a in body["predictions"]] == predicted[:16].tolist()


def test_bad_requests_get_a_4xx_naming_the_fault_and_the_server_keeps_serving(served):
    root, url = served
    pixels, _ = raw_split(root, "test")
    status, body = post(url, {"inputs": pixels[:2, 0, :27, :27].tolist()})
    assert status == 400 and "(2, 27, 27)" in body["message"] and "28x28" in body["message"]
    status, body = post(url, {"inputs": ["bm90IGFuIGltYWdl"]})  # base64 of "not an image"
    assert status == 400 and "image 0: cannot be decoded" in body["message"]
    status, body = post(url, {"inputs": (pixels[:2, 0].astype(float) * 2).tolist()})
    assert status == 400 and "[0, 255]" in body["message"]
    status, body = post(url, {"inputs": pixels[:3, 0].tolist()})
    assert status == 200 and len(body["predictions"]) == 3


def test_shrinkflow_predict_scores_a_folder_of_pngs_with_the_champion(served, stage_params, tmp_path):
    """Batch scoring as a scheduled job runs it: a folder of the files a team receives, an answer per file."""
    root, url = served
    pixels, labels = raw_split(root, "test")
    folder = tmp_path / "incoming"
    (folder / "day2").mkdir(parents=True)
    for i, image in enumerate(pixels[:40, 0]):
        Image.fromarray(image).save(folder / ("day2" if i % 2 else "") / f"{i:03d}.png")
    out = tmp_path / "scores.parquet"
    done = shrinkflow(root, "predict", f"models:/{stage_params.promote.model_name}@champion", str(folder),
                      "-o", str(out))
    assert done.returncode == 0, done.stderr
    scores = pd.read_parquet(out)
    index = scores["id"].str.extract(r"(\d+)\.png")[0].astype(int)
    status, body = post(url, {"inputs": pixels[index.to_numpy(), 0].tolist()})
    assert status == 200
    assert scores["class_index"].tolist() == [a["class_index"] for a in body["predictions"]]
    assert len(scores) == 40 and scores["id"].str.startswith("day2/").sum() == 20
