"""fraudstream replay into the real broker: pacing, label timing, --map, bad rows, windows."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.datafile import write_transactions
from tests.integration.history.cli_run import fraudstream, read_back
from tests.unit.history.history_data import DAY_MS, T0, table

pytestmark = pytest.mark.integration


def _write(df: pd.DataFrame, tmp_path: Path, name: str = "data.parquet") -> Path:
    return write_transactions(df, tmp_path / name)


def _achieved(out: str) -> float:
    found = re.search(r"achieved ([\d,]+) tx/s", out)
    assert found, out
    return float(found.group(1).replace(",", ""))


def test_rate_is_held_within_5_percent(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _write(table(3000, 30 * DAY_MS), tmp_path)
    topic = topic_factory("tx")
    argv = ["replay", "--data", str(data), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", topic, "--no-labels", "--rate", "1000"]
    assert fraudstream(argv) == 0
    out = capsys.readouterr().out
    got = read_back(kafka_bootstrap, topic, 3000)
    assert len(got) == 3000
    stamps = np.array([ts for ts, _k, _v in got])
    broker_rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert broker_rate == pytest.approx(1000, rel=0.05)
    # and over each second on its own, not just on average
    per_second = np.bincount((stamps - stamps[0]) // 1000)[:2]
    assert all(950 <= n <= 1050 for n in per_second), per_second
    assert _achieved(out) == pytest.approx(1000, rel=0.05)
    assert "sent 3,000, failed 0" in out


def test_speed_scales_event_time_gaps(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    df = table(1500, 2 * 3_600_000)  # two hours of history at 2400x: three seconds
    data = _write(df, tmp_path)
    topic = topic_factory("tx")
    argv = ["replay", "--data", str(data), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", topic, "--no-labels", "--speed", "2400x"]
    assert fraudstream(argv) == 0
    got = read_back(kafka_bootstrap, topic, 1500)
    stamps = np.array([ts for ts, _k, _v in got], dtype=np.int64)
    event = np.array([v["event_time"] for _ts, _k, v in got], dtype=np.int64)
    assert (np.diff(event) >= 0).all()
    expected = (event - event[0]) / 2400
    lag = np.abs((stamps - stamps[0]) - expected)
    # on schedule as a rule; a stall of this shared VM (a send 319 ms late was seen in CI)
    # delays the records around it, and the replay then catches up with its schedule
    assert np.median(lag) < 40, np.median(lag)
    assert lag.max() < 5_000, lag.max()
    span = (stamps[-1] - stamps[0]) / 1000
    scheduled = (event[-1] - event[0]) / 1000 / 2400
    assert scheduled * 0.95 <= span <= scheduled + 5, (span, scheduled)
    assert "x event time, requested 2400x" in capsys.readouterr().out


def test_labels_arrive_after_their_transaction_at_event_time_plus_delay(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df = table(600, 10 * DAY_MS, fraud_every=10)
    data = _write(df, tmp_path)
    tx_topic, label_topic = topic_factory("tx"), topic_factory("lab")
    speed = 10 * 86_400 / 4  # ten days in four seconds: a two-day delay is 800 ms
    argv = ["replay", "--data", str(data), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", tx_topic, "--labels-topic", label_topic, "--label-delay-days", "2"]
    argv += ["--speed", f"{speed:g}x"]
    assert fraudstream(argv) == 0
    txs = read_back(kafka_bootstrap, tx_topic, 600)
    labels = read_back(kafka_bootstrap, label_topic, 60)
    assert len(txs) == 600 and len(labels) == 60
    sent_at = {v["transaction_id"]: ts for ts, _k, v in txs}
    frauds = df.loc[df["is_fraud"] == 1, "transaction_id"].tolist()
    assert sorted(v["transaction_id"] for _ts, _k, v in labels) == frauds
    for ts, key, v in labels:
        assert v["label_time"] == v["event_time"] + 2 * DAY_MS and v["is_fraud"] is True
        assert key == v["customer_id"].encode()
        gap = ts - sent_at[v["transaction_id"]]
        assert 760 <= gap <= 840, (v, gap)
    # interleaved: each label is sent after every transaction with an earlier event time
    tx_times = np.array([(v["event_time"], ts) for ts, _k, v in txs])
    for ts, _k, v in labels:
        earlier = tx_times[tx_times[:, 0] < v["label_time"], 1]
        assert earlier.max() <= ts + 40


def test_map_replays_a_file_with_upper_case_columns(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df = table(200, 3 * DAY_MS, fraud_every=20)
    upper = pd.DataFrame(
        {
            "TRANSACTION_ID": df["transaction_id"],
            "TX_DATETIME": pd.to_datetime(df["event_time_ms"], unit="ms").dt.strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            ),
            "CUSTOMER_ID": df["customer_id"],
            "TERMINAL_ID": df["terminal_id"],
            "TX_AMOUNT": df["amount"],
            "TX_FRAUD": df["is_fraud"],
        }
    )
    path = tmp_path / "upper.csv"
    upper.to_csv(path, index=False)
    tx_topic, label_topic = topic_factory("tx"), topic_factory("lab")
    mapping = (
        "transaction_id=TRANSACTION_ID,event_time=TX_DATETIME,customer_id=CUSTOMER_ID,"
        "terminal_id=TERMINAL_ID,amount=TX_AMOUNT,is_fraud=TX_FRAUD"
    )
    argv = ["replay", "--data", str(path), "--map", mapping, "--bootstrap-servers"]
    argv += [kafka_bootstrap, "--topic", tx_topic, "--labels-topic", label_topic]
    assert fraudstream(argv) == 0
    got = read_back(kafka_bootstrap, tx_topic, 200)
    sent = pd.DataFrame([v for _ts, _k, v in got])
    assert sent["transaction_id"].tolist() == df["transaction_id"].tolist()
    assert sent["event_time"].tolist() == df["event_time_ms"].tolist()
    assert sent["amount"].tolist() == df["amount"].tolist()
    assert [k for _ts, k, _v in got] == [c.encode() for c in df["customer_id"]]
    assert len(read_back(kafka_bootstrap, label_topic, 10)) == 10


def test_a_bad_row_stops_the_replay_before_anything_is_sent(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    df = table(50, DAY_MS).astype({"amount": object})
    df.loc[17, "amount"] = "twelve"
    path = tmp_path / "bad.csv"
    df.rename(columns={"event_time_ms": "event_time"}).to_csv(path, index=False)
    topic = topic_factory("tx")
    argv = ["replay", "--data", str(path), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", topic, "--no-labels"]
    assert fraudstream(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 18" in err[0] and "amount" in err[0], err
    assert read_back(kafka_bootstrap, topic, 0) == []

    assert fraudstream([*argv, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 bad row(s)" in captured.err
    ids = [v["transaction_id"] for _ts, _k, v in read_back(kafka_bootstrap, topic, 49)]
    assert ids == [t for i, t in enumerate(df["transaction_id"]) if i != 17]


def test_window_and_resume_send_exactly_the_selected_messages(
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df = table(300, 10 * DAY_MS, fraud_every=6)
    data = _write(df, tmp_path)
    tx_topic, label_topic = topic_factory("tx"), topic_factory("lab")
    ms = df["event_time_ms"].to_numpy()
    inside = df.loc[(ms >= T0 + 2 * DAY_MS) & (ms < T0 + 6 * DAY_MS), "transaction_id"].tolist()
    resume_after = inside[99]
    argv = ["replay", "--data", str(data), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", tx_topic, "--labels-topic", label_topic, "--label-delay-days", "1"]
    argv += ["--from", "2018-04-03", "--to", "2018-04-07", "--start-after", resume_after]
    assert fraudstream(argv) == 0
    got = [v["transaction_id"] for _ts, _k, v in read_back(kafka_bootstrap, tx_topic, 1)]
    assert got == inside[100:]
    due = ms + DAY_MS
    fraud = df["is_fraud"].to_numpy() == 1
    cut = ms[df["transaction_id"] == resume_after][0]
    in_window = fraud & (due >= T0 + 2 * DAY_MS) & (due < T0 + 6 * DAY_MS) & (due > cut)
    labels = read_back(kafka_bootstrap, label_topic, int(in_window.sum()))
    assert sorted(v["transaction_id"] for _ts, _k, v in labels) == sorted(
        df.loc[in_window, "transaction_id"]
    )


def test_a_missing_topic_is_one_clear_line(
    tmp_path: Path,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _write(table(10, DAY_MS), tmp_path)
    argv = ["replay", "--data", str(data), "--bootstrap-servers", kafka_bootstrap]
    argv += ["--topic", "no-such-topic-for-replay", "--no-labels"]
    assert fraudstream(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: topic 'no-such-topic-for-replay' does not exist on the broker: create it first"
    ]
