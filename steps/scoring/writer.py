"""The scores file, written a batch at a time into a temporary file beside it and renamed into place at the end.

So a failed or interrupted run leaves the previous OUTPUT (or none) and no partial one: the temporary
file (`.<name>.<random>.tmp` in OUTPUT's folder, so the rename stays on one file system and is atomic)
is removed on any failure. Parquet (.parquet, .pq) through pyarrow's ParquetWriter, one row group per
batch; CSV (.csv) appended with a header once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from steps.core.files import OutputWriteError, atomic_write

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
ERRORS_SUFFIX = ".errors.csv"


def output_format(path: Path) -> str:
    """"parquet" or "csv" by the file's suffix; ValueError naming the path otherwise."""
    found = FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise ValueError(f"{path}: cannot tell the output format from its suffix; name it .parquet, .pq or .csv")
    return found


def errors_path(output: Path) -> Path:
    """Where the rows a run skipped are listed: beside the output, `<OUTPUT>.errors.csv`."""
    return Path(output).with_name(Path(output).name + ERRORS_SUFFIX)


class ScoresWriter:
    """`with ScoresWriter(path) as out: out.write(frame); ...; out.commit()`: the file appears only at commit,
    whole; leaving the block without committing (an exception included) discards everything written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.rows = 0
        self._tmp: Path | None = None
        self._parquet = None  # pyarrow.parquet.ParquetWriter, opened with the first batch's schema

    def __enter__(self) -> ScoresWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as err:
            raise OutputWriteError(f"cannot write {self.path}: {err.strerror or err}") from err
        os.close(fd)
        self._tmp = Path(tmp)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append rows; every batch must have the first one's columns (Parquet: cast to its types)."""
        try:
            if self.format == "csv":
                frame.to_csv(self._tmp, mode="a", header=self.rows == 0, index=False)
            else:
                self._write_parquet(frame)
        except OSError as err:
            raise OutputWriteError(f"cannot write {self.path}: {err.strerror or err}") from err
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
        elif table.schema != self._parquet.schema:
            table = table.cast(self._parquet.schema)
        self._parquet.write_table(table)

    def commit(self) -> None:
        """Close the file and rename it onto `path`."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        try:
            os.replace(self._tmp, self.path)
        except OSError as err:
            raise OutputWriteError(f"cannot write {self.path}: {err.strerror or err}") from err
        self._tmp = None

    def __exit__(self, *exc) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_errors(output: Path, errors: list[tuple[object, str]]) -> Path | None:
    """List `errors` (id, why) in `<output>.errors.csv`, atomically; with none, remove an earlier run's list
    (it would describe data this run scored). Returns the file written, or None."""
    import pandas as pd

    path = errors_path(output)
    if not errors:
        path.unlink(missing_ok=True)
        return None
    frame = pd.DataFrame(errors, columns=["id", "error"])
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return path
