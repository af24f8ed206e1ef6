"""The ``simulate`` and ``features compute`` commands, through argparse as a user runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.features import cli
from fraudstream.features.datafile import read_transactions
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.exceptions import DataFileError
from fraudstream.features.offline import compute_features


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args))


SMALL = ("--days", "20", "--customers", "80", "--terminals", "150", "--seed", "4")


def test_simulate_writes_the_requested_format_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim.csv"
    assert _run("simulate", "--out", str(out), *SMALL) == 0
    df = read_transactions(out)
    printed = capsys.readouterr().out
    assert f"wrote {len(df):,} transactions to {out}" in printed
    assert "by scenario 1: " in printed
    assert df["event_time_ms"].min() >= 1_522_540_800_000
    assert set(df.columns) >= {"is_fraud", "fraud_scenario"}


def test_features_compute_memory_equals_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sim.parquet"
    _run("simulate", "--out", str(data), *SMALL)
    out = tmp_path / "features.parquet"
    assert (
        _run("features", "compute", "--data", str(data), "--out", str(out), "--store", "memory")
        == 0
    )
    assert "transactions/s" in capsys.readouterr().out
    got = pd.read_parquet(out)
    assert list(got.columns) == ["transaction_id", *FEATURE_NAMES]
    df = read_transactions(data)
    assert got["transaction_id"].tolist() == df["transaction_id"].tolist()
    np.testing.assert_allclose(
        got[list(FEATURE_NAMES)].to_numpy(), compute_features(df), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--out", "x", "--days", "0"], "expected a whole number >= 1"),
        (["simulate", "--out", "x", "--format", "xlsx"], "invalid choice"),
        (["simulate"], "--out"),
        (["features", "compute", "--data", "d", "--out", "o", "--store", "disk"], "invalid choice"),
        (["features"], "SUBCOMMAND"),
    ],
)
def test_bad_flags_exit_2_naming_the_problem(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_missing_data_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DataFileError, match="does not exist"):
        _run(
            "features",
            "compute",
            "--data",
            str(tmp_path / "no.parquet"),
            "--out",
            "o",
            "--store",
            "memory",
        )
    code = cli.main(
        [
            "features",
            "compute",
            "--data",
            str(tmp_path / "no.csv"),
            "--out",
            "o",
            "--store",
            "memory",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "no.csv does not exist" in err[0]


def test_bad_start_date_is_a_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(["simulate", "--out", str(tmp_path / "x.parquet"), "--start-date", "soon"])
    assert code == 2
    assert "start_date 'soon'" in capsys.readouterr().err
