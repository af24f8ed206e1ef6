"""Turn a raw file frame into canonical, typed columns, vectorised, flagging bad rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from fraudstream.features.definitions import MAX_AMOUNT, MIN_EVENT_TIME_MS
from fraudstream.features.exceptions import DataFileError

MAX_ID_LENGTH = 128
REQUIRED = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")
OPTIONAL_STR = ("currency", "channel", "mcc", "country")
_TIME_ALIASES = ("event_time", "event_time_ms")
_TRUE = frozenset({"1", "true", "True", "TRUE"})
_FALSE = frozenset({"0", "false", "False", "FALSE"})

Mask = npt.NDArray[np.bool_]
Problems = list[tuple[int, str, str]]


@dataclass
class _Rows:
    """Collects the first problem of each bad row."""

    n: int
    bad: Mask = field(init=False)
    problems: Problems = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.n, dtype=bool)

    def flag(self, mask: Mask, field_name: str, why: Callable[[int], str]) -> None:
        new = np.flatnonzero(mask & ~self.bad)
        self.problems += [(int(i) + 1, field_name, why(int(i))) for i in new]
        self.bad |= mask


def normalize_frame(
    raw: pd.DataFrame, column_map: Mapping[str, str], file: str
) -> tuple[pd.DataFrame, Problems]:
    """Canonical frame of the good rows, and ``(row, field, problem)`` for the others."""
    source = _resolve_columns(raw, column_map, file)
    rows = _Rows(len(raw))
    out: dict[str, object] = {}
    out["transaction_id"] = _ids(raw[source["transaction_id"]], "transaction_id", rows)
    out["event_time_ms"] = _event_times(raw[source["event_time"]], rows)
    out["customer_id"] = _ids(raw[source["customer_id"]], "customer_id", rows)
    out["terminal_id"] = _ids(raw[source["terminal_id"]], "terminal_id", rows)
    out["amount"] = _amounts(raw[source["amount"]], rows)
    if "is_fraud" in source:
        out["is_fraud"] = _fraud_flags(raw[source["is_fraud"]], rows)
    if "fraud_scenario" in source:
        scen = pd.to_numeric(raw[source["fraud_scenario"]], errors="coerce")
        out["fraud_scenario"] = scen.fillna(0).to_numpy().astype(np.int8)
    for name in OPTIONAL_STR:
        if name in source:
            out[name] = raw[source[name]].astype("str").where(raw[source[name]].notna(), None)
    frame = pd.DataFrame(out)
    return frame.loc[~rows.bad].reset_index(drop=True), rows.problems


def _resolve_columns(raw: pd.DataFrame, column_map: Mapping[str, str], file: str) -> dict[str, str]:
    mapping = dict(column_map)
    if "event_time_ms" in mapping:
        mapping.setdefault("event_time", mapping.pop("event_time_ms"))
    source: dict[str, str] = {}
    for name in (*REQUIRED, "is_fraud", "fraud_scenario", *OPTIONAL_STR):
        candidates = [mapping[name]] if name in mapping else _default_names(name)
        found = next((c for c in candidates if c in raw.columns), None)
        if found is not None:
            source[name] = found
        elif name in mapping or name in REQUIRED:
            wanted = " or ".join(candidates)
            msg = (
                f"{file}: no column {wanted} for {name} "
                f"(columns: {', '.join(map(str, raw.columns))}); "
                f"map one with --column-map {name}=COLUMN"
            )
            raise DataFileError(msg)
    return source


def _default_names(name: str) -> list[str]:
    return list(_TIME_ALIASES) if name == "event_time" else [name]


def _ids(col: pd.Series, name: str, rows: _Rows) -> pd.Series:
    if ptypes.is_bool_dtype(col):
        rows.flag(np.ones(len(col), dtype=bool), name, lambda _i: f"{name} is a boolean, not an id")
        return col.astype("str")
    if ptypes.is_integer_dtype(col):
        return col.astype("str")
    if ptypes.is_float_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        whole = np.isfinite(values) & (values == np.round(values))
        rows.flag(
            ~whole, name, lambda i: f"{name} {float(values[i])!r} is not a whole number or text"
        )
        return pd.Series(np.where(whole, values, 0).astype(np.int64)).astype("str")
    if isinstance(col.dtype, pd.StringDtype):
        text = col
    else:
        text = col.map(_id_text, na_action="ignore").astype("str")
    missing = text.isna().to_numpy()
    rows.flag(missing, name, lambda _i: f"{name} is missing or not text/integer")
    lengths = text.str.len().fillna(0).to_numpy()
    rows.flag(lengths == 0, name, lambda _i: f"{name} is empty")
    too_long = lengths > MAX_ID_LENGTH
    rows.flag(too_long, name, lambda _i: f"{name} is longer than {MAX_ID_LENGTH} characters")
    return text


def _id_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    return None


def _event_times(col: pd.Series, rows: _Rows) -> npt.NDArray[np.int64]:
    ms = _to_epoch_ms(col)
    missing = np.isnan(ms)
    rows.flag(
        missing,
        "event_time",
        lambda i: f"event_time {col.iloc[i]!r} is neither epoch milliseconds nor an RFC 3339 time",
    )
    early = ~missing & (ms < MIN_EVENT_TIME_MS)
    rows.flag(early, "event_time", lambda i: f"event_time {col.iloc[i]!r} is before 2000-01-01")
    return np.where(missing, 0, ms).astype(np.int64)


def _to_epoch_ms(col: pd.Series) -> npt.NDArray[np.float64]:
    """Epoch ms as float (NaN where unparseable); exact below 2**53 ms (year 287,000)."""
    if ptypes.is_datetime64_any_dtype(col):
        stamps = pd.to_datetime(col, utc=True)
        return _stamps_to_ms(stamps)
    if ptypes.is_bool_dtype(col):
        return np.full(len(col), np.nan)
    numeric = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    if ptypes.is_numeric_dtype(col):
        return np.where(numeric == np.round(numeric), numeric, np.nan)
    numeric = np.where(numeric == np.round(numeric), numeric, np.nan)
    todo = np.isnan(numeric) & col.notna().to_numpy()
    if todo.any():
        text = col[todo].astype("str")
        stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        numeric[todo] = _stamps_to_ms(stamps)
    return numeric


def _stamps_to_ms(stamps: pd.Series) -> npt.NDArray[np.float64]:
    valid = stamps.notna().to_numpy()
    ms = np.full(len(stamps), np.nan)
    ms[valid] = stamps[valid].dt.as_unit("ms").astype("int64").to_numpy()
    return ms


def _amounts(col: pd.Series, rows: _Rows) -> npt.NDArray[np.float64]:
    if ptypes.is_bool_dtype(col):
        values = np.full(len(col), np.nan)
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    rows.flag(bad, "amount", lambda i: f"amount {col.iloc[i]!r} is not a finite number")
    rows.flag(~bad & (values < 0), "amount", lambda i: f"amount {float(values[i])!r} is negative")
    rows.flag(
        ~bad & (values > MAX_AMOUNT),
        "amount",
        lambda i: f"amount {float(values[i])!r} is above the maximum {MAX_AMOUNT:g}",
    )
    return np.where(bad, 0.0, values)


def _fraud_flags(col: pd.Series, rows: _Rows) -> npt.NDArray[np.int8]:
    if ptypes.is_bool_dtype(col) and not col.isna().any():
        return col.to_numpy(dtype=np.int8)
    if ptypes.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = col.astype("str")
        values = np.where(
            text.isin(_TRUE).to_numpy(), 1.0, np.where(text.isin(_FALSE).to_numpy(), 0.0, np.nan)
        )
    bad = ~((values == 0) | (values == 1))
    rows.flag(bad, "is_fraud", lambda i: f"is_fraud {col.iloc[i]!r} is not 0/1 or true/false")
    return np.where(bad, 0, values).astype(np.int8)
