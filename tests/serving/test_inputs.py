"""The served model's side, without MLflow: a caller's raw input to the graph's batch, the answer, the contract."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steps.serving.answers import answer
from steps.serving.contract import Contract, ContractError
from steps.serving.inputs import InputError, caller_rows, to_batch

GRAY = Contract("image", (1, 6, 5), ("a", "b"))
RGB_RESIZED = Contract("image", (3, 4, 4), ("a", "b"), resize=4)
TABLE = Contract("features", (2,), ("no", "yes"), feature_names=("age", "bmi"))
PIXELS = np.random.default_rng(0).integers(0, 256, size=(3, 1, 6, 5)).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_layout_and_dtype_of_raw_pixels_gives_the_same_batch():
    expected = PIXELS.astype(np.float32)
    for given in (PIXELS, PIXELS[:, 0], PIXELS.transpose(0, 2, 3, 1), PIXELS.astype(np.float64),
                  PIXELS[:, 0].tolist()):
        batch = to_batch(np.asarray(given) if isinstance(given, list) else given, GRAY)
        assert batch.dtype == np.float32 and np.array_equal(batch, expected)
    encoded = np.array([png(p[0]) for p in PIXELS], dtype=object)
    assert np.array_equal(to_batch(encoded, GRAY), expected)
    as_text = np.array([base64.b64encode(png(p[0])).decode() for p in PIXELS], dtype=object)
    assert np.array_equal(to_batch(as_text, GRAY), expected)  # base64, as JSON carries bytes
    assert np.array_equal(to_batch(as_text.astype(str), GRAY), expected)  # np.array(list of str): dtype <U


def test_other_sizes_are_resized_as_the_data_stage_does_only_when_it_resized():
    from steps.sources.images import conform_image

    photo = np.random.default_rng(1).integers(0, 256, size=(9, 7, 3)).astype(np.uint8)
    expected = conform_image(Image.fromarray(photo), 3, 4)  # the data stage's own conversion
    assert np.array_equal(to_batch(photo[None], RGB_RESIZED)[0], expected)
    assert np.array_equal(to_batch(np.array([png(photo)], dtype=object), RGB_RESIZED)[0], expected)
    with pytest.raises(InputError, match=r"size 7x9, but the model takes 5x6 and its data was not resized"):
        to_batch(np.array([png(photo[..., 0])], dtype=object), GRAY)


@pytest.mark.parametrize("given,named", [
    (PIXELS[:, :, :5], r"shape \(3, 1, 5, 5\): expected images of 1 channel\(s\), 6x5"),
    (np.repeat(PIXELS, 3, axis=1), r"shape \(3, 3, 6, 5\)"),
    (PIXELS.astype(np.float32) * 2, r"raw values in \[0, 255\]"),
    (np.full((1, 6, 5), np.nan), r"finite numbers in \[0, 255\]; got NaN or infinite values"),
    (np.array([png(np.full((6, 5), 60000, np.uint16))], dtype=object), r"image 0: unsupported image mode 'I;16'"),
    (np.array([b"not an image"], dtype=object), r"image 0: cannot be decoded"),
    (np.zeros((0, 6, 5), np.uint8), r"empty batch"),
    (np.array([["a"] * 5] * 6, dtype=object)[None], r"pixel values must be numbers"),
])
def test_pixels_the_model_cannot_take_are_refused_naming_why(given, named):
    with pytest.raises(InputError, match=named):
        to_batch(given, GRAY)


def test_tables_take_named_columns_in_any_order_and_refuse_the_rest_naming_columns():
    rows = pd.DataFrame({"bmi": [20.0, 31.5], "age": [40, 61]})
    assert np.array_equal(to_batch(rows, TABLE), np.array([[40, 20.0], [61, 31.5]], np.float32))
    with pytest.raises(InputError, match=r"missing \['bmi'\], unknown \['weight'\]"):
        to_batch(rows.rename(columns={"bmi": "weight"}), TABLE)
    with pytest.raises(InputError, match=r"\['bmi'\] hold NaN or infinite values \(first: row 1, column 'bmi'\)"):
        to_batch(rows.assign(bmi=[20.0, np.nan]), TABLE)
    with pytest.raises(InputError, match=r"\['age'\] are not numeric"):
        to_batch(rows.assign(age=["forty", "sixty"]), TABLE)
    with pytest.raises(InputError, match="expected a table with the columns"):
        to_batch(np.zeros((2, 2)), TABLE)
    assert list(caller_rows(np.zeros((1, 2), np.float32), TABLE).columns) == ["age", "bmi"]


def test_the_answer_names_classes_with_probabilities_or_logits():
    logits = np.array([[0.0, 2.0], [3.0, -1.0]], np.float32)
    labels = answer(logits, ("cat", "dog"))
    assert list(labels.columns) == ["label", "class_index", "cat", "dog"]
    assert labels["label"].tolist() == ["dog", "cat"] and labels["class_index"].tolist() == [1, 0]
    assert np.allclose(labels[["cat", "dog"]].sum(axis=1), 1.0) and labels.loc[0, "dog"] > 0.88
    assert answer(logits, ("cat", "dog"), "logits").to_numpy().tolist() == logits.tolist()


def test_the_contract_says_what_differs_between_tasks_and_refuses_what_it_cannot_serve():
    other = Contract("image", (1, 6, 5), ("a", "c"), mean=(0.3,))
    assert GRAY.differences(other) == ["classes: ['a', 'b'] vs ['a', 'c']"]
    assert GRAY.differences(Contract("image", (1, 6, 5), ("a", "b"), mean=(0.9,), dataset="x")) == []
    assert "kind: image vs features" in GRAY.differences(TABLE)
    assert Contract.from_dict(GRAY.to_dict()) == GRAY
    with pytest.raises(ContractError, match="collide with the answer's columns"):
        Contract("image", (1, 6, 5), ("label", "b"))
    with pytest.raises(ContractError, match="malformed input contract"):
        Contract.from_dict({"kind": "image"})
