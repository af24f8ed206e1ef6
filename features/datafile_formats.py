"""Raw reading and writing of Parquet, CSV and JSON Lines files (no validation here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from fraudstream.features.exceptions import DataFileError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_JSONL_CHUNK = 100_000

Unreadable = list[tuple[int, str]]
"""(1-based row, problem) for lines that could not be parsed at all."""


def read_file(file: Path, column_map: Mapping[str, str]) -> tuple[pd.DataFrame, Unreadable]:
    """The file's rows as a raw frame (CSV: every cell a string or NA)."""
    fmt = FORMATS.get(file.suffix.lower())
    try:
        if fmt == "parquet":
            return pd.read_parquet(file), []
        if fmt == "csv":
            return _read_csv(file), []
        if fmt == "jsonl":
            return _read_jsonl(file)
    except (OSError, ValueError) as exc:
        msg = f"{file}: cannot read it as {fmt}: {exc}"
        raise DataFileError(msg) from exc
    msg = f"{file}: unknown extension {file.suffix!r}; use .parquet, .csv or .jsonl"
    raise DataFileError(msg)


def _read_csv(file: Path) -> pd.DataFrame:
    # Strings everywhere: "007" stays an id, not 7; values are typed during validation.
    return pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])


def _read_jsonl(file: Path) -> tuple[pd.DataFrame, Unreadable]:
    try:
        return pd.read_json(file, lines=True, dtype=False), []
    except ValueError:
        pass  # find the bad lines one by one below
    rows: list[dict[str, object]] = []
    bad: Unreadable = []
    with file.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.append((number, f"not JSON ({exc})"))
                continue
            if not isinstance(value, dict):
                bad.append((number, "not a JSON object"))
                continue
            rows.append(value)
    return pd.DataFrame.from_records(rows), bad


def write_frame(df: pd.DataFrame, target: Path, fmt: str) -> None:
    """Write ``df`` as ``fmt`` (no index column)."""
    if fmt == "parquet":
        df.to_parquet(target, index=False)
    elif fmt == "csv":
        df.to_csv(target, index=False)
    else:
        _write_jsonl(df, target)


def _write_jsonl(df: pd.DataFrame, target: Path) -> None:
    # orjson writes the shortest round-trip repr of each float; pandas' to_json rounds.
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    with target.open("wb") as fh:
        for start in range(0, len(df), _JSONL_CHUNK):
            chunk = df.iloc[start : start + _JSONL_CHUNK]
            chunk = chunk.astype(object).where(chunk.notna(), None)
            for record in chunk.to_dict("records"):
                fh.write(orjson.dumps(record, option=opts, default=_plain))


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError
