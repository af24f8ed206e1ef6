"""Transaction files (Parquet, CSV, JSON Lines; a file or a folder of them) to and from the
canonical table every offline tool uses.

Canonical columns: ``transaction_id`` (str), ``event_time_ms`` (int64, epoch ms UTC),
``customer_id`` (str), ``terminal_id`` (str), ``amount`` (float64); optional ``is_fraud``
(int8 0/1), ``fraud_scenario`` (int8) and the optional Transaction fields ``currency``,
``channel``, ``mcc``, ``country`` (str). Other columns are dropped. In files the time
column is ``event_time`` (epoch ms, RFC 3339 strings or datetimes) or ``event_time_ms``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.features.datafile_columns import normalize_frame
from fraudstream.features.datafile_formats import FORMATS, read_file, write_frame
from fraudstream.features.exceptions import ConfigError, DataFileError

logger = logging.getLogger(__name__)

CANONICAL_FIELDS = (
    "transaction_id",
    "event_time",
    "customer_id",
    "terminal_id",
    "amount",
    "is_fraud",
    "fraud_scenario",
    "currency",
    "channel",
    "mcc",
    "country",
)


@dataclass(frozen=True)
class BadRow:
    """One row that could not be read, as reported with ``skip_bad``."""

    path: str
    """The file it is in."""
    row: int
    """1-based data row in that file (a CSV header line is not counted)."""
    field: str
    """Canonical field at fault (``""`` for an unparseable line)."""
    problem: str
    """What is wrong with it."""

    def __str__(self) -> str:
        return f"{self.path}: row {self.row}: {self.problem}"


def parse_column_map(text: str) -> dict[str, str]:
    """``"customer_id=CUSTOMER_ID,event_time=TX_DATETIME"`` -> a column map."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not field or not column:
            msg = f"column map entry {part!r} is not FIELD=COLUMN (e.g. amount=TX_AMOUNT)"
            raise ConfigError(msg)
        _check_field(field)
        mapping[field] = column
    return mapping


def read_transactions(
    path: str | Path,
    column_map: Mapping[str, str] | None = None,
    skip_bad: bool = False,
    *,
    sort: bool = True,
) -> pd.DataFrame:
    """The canonical table of a file or folder, sorted by event time (stable) unless ``sort``
    is false.

    A bad row raises ``DataFileError`` naming the file, row and problem; with ``skip_bad``
    bad rows are dropped (``read_transactions_report`` also returns them).
    """
    if skip_bad:
        return read_transactions_report(path, column_map, sort=sort)[0]
    df, bad = _read_all(Path(path), column_map or {}, stop_at_first=True)
    if bad:
        raise DataFileError(str(bad[0]))
    return _finish(df, sort)


def read_transactions_report(
    path: str | Path, column_map: Mapping[str, str] | None = None, *, sort: bool = True
) -> tuple[pd.DataFrame, list[BadRow]]:
    """Like ``read_transactions(..., skip_bad=True)``, plus the rows that were dropped."""
    df, bad = _read_all(Path(path), column_map or {}, stop_at_first=False)
    if bad:
        logger.warning("skipped %d bad row(s); first: %s", len(bad), bad[0])
    return _finish(df, sort), bad


def write_transactions(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write a canonical table as Parquet, CSV or JSON Lines (``fmt`` or the extension).

    The time column is written as ``event_time`` in epoch milliseconds, so every JSON line
    is a valid Transaction message.
    """
    target = Path(path)
    fmt = fmt or FORMATS.get(target.suffix.lower())
    if fmt not in ("parquet", "csv", "jsonl"):
        msg = f"cannot tell the format of {target}: pass fmt='parquet', 'csv' or 'jsonl'"
        raise DataFileError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    out = df.rename(columns={"event_time_ms": "event_time"})
    write_frame(out, target, fmt)
    return target


def data_files(path: Path) -> list[Path]:
    """``path`` itself, or the data files directly inside the folder ``path``, by name."""
    if path.is_file():
        return [path]
    if not path.exists():
        msg = f"{path} does not exist: pass a data file or a folder of them"
        raise DataFileError(msg)
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FORMATS
    )
    if not files:
        msg = f"{path} holds no .parquet, .csv or .jsonl file"
        raise DataFileError(msg)
    return files


def _check_field(field: str) -> None:
    if field not in CANONICAL_FIELDS and field != "event_time_ms":
        msg = f"unknown field {field!r} in column map; known: {', '.join(CANONICAL_FIELDS)}"
        raise ConfigError(msg)


def _read_all(
    path: Path, column_map: Mapping[str, str], *, stop_at_first: bool
) -> tuple[pd.DataFrame, list[BadRow]]:
    for field in column_map:
        _check_field(field)
    frames: list[pd.DataFrame] = []
    bad: list[BadRow] = []
    for file in data_files(path):
        raw, unreadable = read_file(file, column_map)
        bad += [BadRow(str(file), row, "", problem) for row, problem in unreadable]
        frame, problems = normalize_frame(raw, column_map, str(file))
        bad += [BadRow(str(file), row, field, problem) for row, field, problem in problems]
        frames.append(frame)
        if stop_at_first and bad:
            break
    bad.sort(key=lambda b: (b.path, b.row))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df, bad


def _finish(df: pd.DataFrame, sort: bool) -> pd.DataFrame:
    if sort:
        order = np.argsort(df["event_time_ms"].to_numpy(), kind="stable")
        df = df.iloc[order]
    return df.reset_index(drop=True)
