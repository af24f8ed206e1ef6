"""Reading and writing transaction files: formats, column maps, time forms, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.datafile import (
    BadRow,
    parse_column_map,
    read_transactions,
    read_transactions_report,
    write_transactions,
)
from fraudstream.features.exceptions import ConfigError, DataFileError
from fraudstream.features.simulator import SimulatorConfig, simulate

T0 = 1_522_540_800_000


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return simulate(SimulatorConfig(n_customers=30, n_terminals=60, n_days=5, seed=1))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_round_trip_each_format(tmp_path: Path, sample: pd.DataFrame, fmt: str) -> None:
    path = write_transactions(sample, tmp_path / f"data.{fmt}")
    back = read_transactions(path)
    pd.testing.assert_frame_equal(back, sample, check_dtype=False)
    assert back["event_time_ms"].dtype == np.int64
    assert back["is_fraud"].dtype == np.int8


def test_folder_of_mixed_files_is_one_table_sorted_by_time(
    tmp_path: Path, sample: pd.DataFrame
) -> None:
    half = len(sample) // 2
    write_transactions(sample.iloc[half:], tmp_path / "a.csv")
    write_transactions(sample.iloc[:half], tmp_path / "b.parquet")
    (tmp_path / ".hidden.csv").write_text("junk")
    (tmp_path / "notes.txt").write_text("ignored")
    pd.testing.assert_frame_equal(read_transactions(tmp_path), sample, check_dtype=False)


def test_handbook_columns_through_a_column_map(tmp_path: Path) -> None:
    csv = tmp_path / "handbook.csv"
    csv.write_text(
        "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
        "1,2018-04-01 00:00:31,596,3156,57.16,0\n"
        "0,2018-04-01 00:00:31,007,3412,81.51,1\n"
    )
    mapping = parse_column_map(
        "customer_id=CUSTOMER_ID, event_time=TX_DATETIME,amount=TX_AMOUNT,is_fraud=TX_FRAUD,"
        "transaction_id=TRANSACTION_ID,terminal_id=TERMINAL_ID"
    )
    df = read_transactions(csv, mapping)
    assert df["transaction_id"].tolist() == ["1", "0"]  # equal times keep file order
    assert df["customer_id"].tolist() == ["596", "007"]
    assert df["event_time_ms"].tolist() == [T0 + 31_000, T0 + 31_000]
    assert df["amount"].tolist() == [57.16, 81.51]
    assert df["is_fraud"].tolist() == [0, 1]


def test_event_time_forms(tmp_path: Path) -> None:
    path = tmp_path / "times.jsonl"
    path.write_text(
        '{"transaction_id":"a","event_time":"2018-04-01T00:00:01Z","customer_id":1,'
        '"terminal_id":"t","amount":1}\n'
        '{"transaction_id":"b","event_time":"2018-04-01T02:00:02.5+02:00","customer_id":"c",'
        '"terminal_id":"t","amount":2.5}\n'
        '{"transaction_id":"c","event_time":1522540803000,"customer_id":"c",'
        '"terminal_id":"t","amount":3}\n'
    )
    df = read_transactions(path)
    assert df["event_time_ms"].tolist() == [T0 + 1000, T0 + 2500, T0 + 3000]
    assert df["customer_id"].tolist() == ["1", "c", "c"]

    stamps = pd.DataFrame(
        {
            "transaction_id": ["x"],
            "event_time": pd.to_datetime(["2018-04-01 00:00:04"]),
            "customer_id": ["c"],
            "terminal_id": ["t"],
            "amount": [1.0],
        }
    )
    stamps.to_parquet(tmp_path / "naive.parquet")
    assert read_transactions(tmp_path / "naive.parquet")["event_time_ms"].tolist() == [T0 + 4000]


BAD_CSV = (
    "transaction_id,event_time,customer_id,terminal_id,amount,is_fraud\n"
    "a,1522540800000,c,t,1.0,0\n"
    "b,yesterday,c,t,1.0,0\n"
    "c,1522540800000,,t,1.0,0\n"
    "d,1522540800000,c,t,-3,0\n"
    "e,1522540800000,c,t,abc,0\n"
    "f,1522540800000,c,t,2.0,2\n"
    "g,900000000000,c,t,2.0,0\n"
    "h,1522540800001,c,t,1e12,0\n"
    "i,1522540800002,c,t,2.0,true\n"
)


def test_bad_row_is_an_error_naming_file_row_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(DataFileError, match=r"bad.csv: row 2: event_time 'yesterday' is neither"):
        read_transactions(path)


def test_skip_bad_reports_every_bad_row_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    df, bad = read_transactions_report(path)
    assert df["transaction_id"].tolist() == ["a", "i"]
    assert df["is_fraud"].tolist() == [0, 1]
    assert [(b.row, b.field) for b in bad] == [
        (2, "event_time"),
        (3, "customer_id"),
        (4, "amount"),
        (5, "amount"),
        (6, "is_fraud"),
        (7, "event_time"),
        (8, "amount"),
    ]
    assert str(bad[2]) == f"{path}: row 4: amount -3.0 is negative"
    assert "before 2000-01-01" in bad[5].problem
    assert "above the maximum" in bad[6].problem
    assert read_transactions(path, skip_bad=True)["transaction_id"].tolist() == ["a", "i"]


def test_unparseable_json_lines_are_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"transaction_id":"a","event_time":1522540800000,"customer_id":"c","terminal_id":"t","amount":1}\n'
        "{not json\n"
        "[1,2]\n"
    )
    df, bad = read_transactions_report(path)
    assert df["transaction_id"].tolist() == ["a"]
    assert bad == [
        BadRow(str(path), 2, "", bad[0].problem),
        BadRow(str(path), 3, "", "not a JSON object"),
    ]
    assert bad[0].problem.startswith("not JSON")


def test_missing_column_names_it_and_suggests_a_map(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("transaction_id,event_time,customer_id,amount\na,1522540800000,c,1\n")
    with pytest.raises(DataFileError, match=r"no column terminal_id.*--column-map terminal_id="):
        read_transactions(path)
    with pytest.raises(DataFileError, match="no column TERM for terminal_id"):
        read_transactions(path, {"terminal_id": "TERM"})


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="does not exist"):
        read_transactions(tmp_path / "nope.parquet")
    with pytest.raises(DataFileError, match=r"no \.parquet, \.csv or \.jsonl"):
        read_transactions(tmp_path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("amount", "FIELD=COLUMN"), ("amount=", "FIELD=COLUMN"), ("price=P", "unknown field 'price'")],
)
def test_bad_column_map_text(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_column_map(text)


def test_write_refuses_an_unknown_format(tmp_path: Path, sample: pd.DataFrame) -> None:
    with pytest.raises(DataFileError, match="cannot tell the format"):
        write_transactions(sample, tmp_path / "data.xlsx")
