"""The scores file appears whole at commit or not at all; the errors list beside it describes this run only."""

from __future__ import annotations

import pandas as pd
import pytest

from steps.scoring.writer import ScoresWriter, errors_path, write_errors


def answers(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "label": ["a"] * n, "class_index": [0] * n,
                         "a": [0.75] * n, "b": [0.25] * n})


def read(path):
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.mark.parametrize("name", ["scores.parquet", "scores.csv"])
def test_batches_appear_together_at_commit(tmp_path, name):
    path = tmp_path / "out" / name
    with ScoresWriter(path) as out:
        out.write(answers(0, 2))
        out.write(answers(2, 3))
        assert not path.exists()  # nothing under the real name before the end
        out.commit()
    pd.testing.assert_frame_equal(read(path), answers(0, 5), check_dtype=False)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]


@pytest.mark.parametrize("name", ["scores.parquet", "scores.csv"])
def test_a_failure_leaves_the_previous_output_and_no_temporary_file(tmp_path, name):
    path = tmp_path / name
    with ScoresWriter(path) as out:
        out.write(answers(0, 1))
        out.commit()
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), ScoresWriter(path) as out:
        out.write(answers(0, 4))
        raise RuntimeError("boom")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [name]


def test_leaving_without_commit_writes_nothing(tmp_path):
    with ScoresWriter(tmp_path / "s.parquet") as out:
        out.write(answers(0, 1))
    assert list(tmp_path.iterdir()) == []


def test_an_output_without_a_known_suffix_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"scores.txt: .*\.parquet, \.pq or \.csv"):
        ScoresWriter(tmp_path / "scores.txt")


def test_parquet_batches_keep_the_first_batchs_column_types(tmp_path):
    path = tmp_path / "s.parquet"
    with ScoresWriter(path) as out:
        out.write(answers(0, 1))
        out.write(answers(1, 1).astype({"a": "float32", "class_index": "int32"}))
        out.commit()
    assert read(path).dtypes["a"] == "float64" and len(read(path)) == 2


def test_the_errors_list_is_written_beside_the_output_and_removed_when_a_run_has_none(tmp_path):
    output = tmp_path / "scores.csv"
    listed = write_errors(output, [("sub/x.png", "not a readable image"), (7, "column 'a' is empty (NaN)")])
    assert listed == errors_path(output) == tmp_path / "scores.csv.errors.csv"
    assert pd.read_csv(listed).to_dict("records") == [{"id": "sub/x.png", "error": "not a readable image"},
                                                      {"id": "7", "error": "column 'a' is empty (NaN)"}]
    assert write_errors(output, []) is None and not listed.exists()
