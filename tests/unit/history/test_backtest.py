"""fraudstream backtest with the in-memory store: metrics against a direct computation, the
live-path features against the offline ones, the challenger, --map, the report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.datafile import read_transactions, write_transactions
from fraudstream.features.definitions import DAY_S, FeatureConfig, seconds
from fraudstream.features.offline import compute_features
from fraudstream.features.replay import fraud_labels
from fraudstream.models import metrics, protocol
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.stream.decision import Rules
from fraudstream.stream.history.backtest import Window, steps
from tests.integration.history.cli_run import fraudstream
from tests.serving import register, train_model

TEST_START = "2018-04-15"
WINDOW = ["--test-start", TEST_START, "--test-days", "6"]


@pytest.fixture(scope="module")
def data_file(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_transactions(history, tmp_path_factory.mktemp("bt") / "history.parquet")


def _backtest(
    data: Path, registry: Registry, report: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> int:
    argv = ["backtest", "--data", str(data), "--registry", str(registry.root)]
    argv += [*WINDOW, "--report", str(report), "--device", "cpu", *extra]
    return fraudstream(argv)


def _test_set(history: pd.DataFrame) -> protocol.EvalSet:
    split = protocol.split(history, "2018-04-01", 7, 7, 6)
    return protocol.eval_set(history, split)


def test_metrics_equal_a_direct_computation_on_the_predictions(
    data_file: Path,
    registry: Registry,
    history: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = tmp_path / "report"
    assert _backtest(data_file, registry, report, monkeypatch) == 0
    predictions = pd.read_parquet(report / "predictions.parquet")
    doc = json.loads((report / "metrics.json").read_text())
    test = _test_set(history)
    assert predictions["transaction_id"].tolist() == test.transaction_id.astype(str).tolist()
    assert list(predictions.columns) == ["transaction_id", "score", "decision"]
    scores = predictions["score"].to_numpy()
    got = doc["models"]["champion"]["metrics"]
    assert got["roc_auc"] == metrics.roc_auc(test.y, scores)
    assert got["average_precision"] == metrics.average_precision(test.y, scores)
    card = metrics.card_precision_at_k(test.day, test.customer, test.y, scores, 100)
    assert got["card_precision_at_100"] == card.mean
    assert doc["models"]["champion"]["card_precision_per_day"] == list(card.per_day)
    assert got["alert_rate"] == metrics.alert_rate(scores, 0.2)
    assert got["decline_precision"] == metrics.precision_at_threshold(test.y, scores, 0.8)
    caught, _share = metrics.fraud_amount_caught(test.y, scores, test.amount, 0.2)
    assert got["fraud_amount_caught"] == pytest.approx(caught, rel=1e-12)
    expected = np.where(scores >= 0.8, "decline", np.where(scores >= 0.2, "review", "approve"))
    assert predictions["decision"].tolist() == expected.tolist()
    counts = doc["models"]["champion"]["decisions"]
    assert counts == {d: int((expected == d).sum()) for d in ("approve", "review", "decline")}
    assert doc["run"]["test_transactions"] == len(test.y) == len(predictions)
    out = capsys.readouterr().out
    assert f"{len(test.y):,} test transactions" in out and "report:" in out


def test_each_rung_of_the_ladder_is_measured_on_the_same_test_set(
    data_file: Path,
    registry: Registry,
    history: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = tmp_path / "report"
    assert _backtest(data_file, registry, report, monkeypatch) == 0
    doc = json.loads((report / "metrics.json").read_text())["models"]["champion"]
    test = _test_set(history)
    split = protocol.split(history, "2018-04-01", 7, 7, 6)
    x = compute_features(history, FeatureConfig()).astype(np.float32)[split.test_rows]
    scorer = Scorer.load(registry, device="cpu")
    blind = x.copy()
    blind[:, 3:] = np.nan
    amounts = history["amount"].to_numpy()[split.test_rows]
    expected = {
        "full": scorer.score(x),
        "truncated_model": scorer.score(x, trees=scorer.truncation_trees),
        "partial_features": scorer.score(blind),
        "rules": Rules().decide(amounts)[1],
    }
    assert list(doc["rungs"]) == list(expected)
    for rung, scores in expected.items():
        got = doc["rungs"][rung]
        assert got["roc_auc"] == pytest.approx(metrics.roc_auc(test.y, scores), abs=1e-12)
        ap = metrics.average_precision(test.y, scores)
        assert got["average_precision"] == pytest.approx(ap, abs=1e-12)
    assert doc["rungs"]["full"]["average_precision"] == doc["metrics"]["average_precision"]
    text = (report / "report.md").read_text()
    assert "## Decision quality per rung" in text and "| partial_features |" in text


def test_live_path_scores_equal_offline_features_scored(
    data_file: Path,
    registry: Registry,
    history: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store replay (started a reach before the test window) gives the offline
    features of the whole history, so the scores are the offline ones, bit for bit."""
    assert _backtest(data_file, registry, tmp_path / "r", monkeypatch) == 0
    predictions = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    split = protocol.split(history, "2018-04-01", 7, 7, 6)
    x = compute_features(history, FeatureConfig()).astype(np.float32)[split.test_rows]
    offline = Scorer.load(registry, device="cpu").score(x)
    np.testing.assert_array_equal(predictions["score"].to_numpy(), offline)


def test_challenger_side_by_side_with_the_difference(
    data_file: Path,
    registry: Registry,
    history: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = register(registry, train_model(history, 6, 3), promote=False)
    report = tmp_path / "report"
    assert _backtest(data_file, registry, report, monkeypatch, "--challenger", other) == 0
    doc = json.loads((report / "metrics.json").read_text())
    predictions = pd.read_parquet(report / "predictions.parquet")
    test = _test_set(history)
    champ, chall = doc["models"]["champion"], doc["models"]["challenger"]
    assert chall["version"] == other != champ["version"]
    challenger_scores = predictions["challenger_score"].to_numpy()
    assert chall["metrics"]["average_precision"] == metrics.average_precision(
        test.y, challenger_scores
    )
    for name, delta in doc["difference"]["metrics"].items():
        assert delta == pytest.approx(chall["metrics"][name] - champ["metrics"][name], abs=1e-12)
    changed = (predictions["decision"] != predictions["challenger_decision"]).sum()
    assert doc["difference"]["decisions_changed"] == int(changed)
    assert not np.array_equal(challenger_scores, predictions["score"].to_numpy())


def test_map_reads_upper_case_columns(
    registry: Registry,
    history: pd.DataFrame,
    data_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upper = pd.DataFrame(
        {
            "TRANSACTION_ID": history["transaction_id"],
            "TX_DATETIME": pd.to_datetime(history["event_time_ms"], unit="ms").dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "CUSTOMER_ID": history["customer_id"],
            "TERMINAL_ID": history["terminal_id"],
            "TX_AMOUNT": history["amount"],
            "TX_FRAUD": history["is_fraud"],
        }
    )
    path = tmp_path / "upper.csv"
    upper.to_csv(path, index=False)
    mapping = (
        "transaction_id=TRANSACTION_ID,event_time=TX_DATETIME,customer_id=CUSTOMER_ID,"
        "terminal_id=TERMINAL_ID,amount=TX_AMOUNT,is_fraud=TX_FRAUD"
    )
    assert _backtest(path, registry, tmp_path / "mapped", monkeypatch, "--map", mapping) == 0
    assert _backtest(data_file, registry, tmp_path / "plain", monkeypatch) == 0
    mapped = pd.read_parquet(tmp_path / "mapped" / "predictions.parquet")
    plain = pd.read_parquet(tmp_path / "plain" / "predictions.parquet")
    assert len(mapped) > 500
    pd.testing.assert_frame_equal(mapped, plain)


def test_report_directory_holds_the_files_a_person_reads(
    data_file: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report"
    assert _backtest(data_file, registry, report, monkeypatch) == 0
    names = sorted(p.name for p in report.iterdir())
    assert names == [
        "card_precision_per_day.png",
        "metrics.json",
        "precision_recall.png",
        "predictions.parquet",
        "report.md",
        "roc.png",
        "score_distribution.png",
    ]
    for png in report.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = (report / "report.md").read_text()
    for needle in ("| roc_auc |", "Card precision@100 per day", "![roc.png](roc.png)"):
        assert needle in text


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--test-start", "2019-01-01"], "no transaction in the 6 test days from 2019-01-01"),
        (["--test-start", "15/04/2018"], "dates must look like 2018-07-25"),
        (["--model", "v9999"], "v9999"),
        (["--store", "redis"], "--store redis needs --redis-url"),
        (["--via-kafka", "--redis-url", "redis://x"], "--via-kafka needs --bootstrap-servers"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    data_file: Path,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    monkeypatch.delenv("FRAUDSTREAM_REDIS_URL", raising=False)
    assert _backtest(data_file, registry, tmp_path / "r", monkeypatch, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_data_without_labels_is_refused(
    history: pd.DataFrame,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_transactions(history.drop(columns=["is_fraud"]), tmp_path / "nolabels.parquet")
    assert _backtest(path, registry, tmp_path / "r", monkeypatch) == 2
    assert "no is_fraud column" in capsys.readouterr().err


def test_steps_never_span_a_day_nor_the_test_start_and_feed_labels_in_time(
    history: pd.DataFrame,
) -> None:
    window = Window(protocol.day_start_ms(TEST_START), test_days=6)
    feed = fraud_labels(history, 7)
    ms = history["event_time_ms"].to_numpy()
    secs = seconds(ms)
    start = window.history_start_ms(FeatureConfig())
    seen: list[int] = []
    fed = 0
    for step in steps(history, feed, window, start, 97):
        assert step.labels.start == fed
        fed = step.labels.stop
        rows = step.rows
        assert len(rows) <= 97 and secs[rows[-1]] - secs[rows[0]] < DAY_S
        assert (ms[rows] >= window.test_start_ms).all() == step.in_test
        assert (ms[rows] >= window.test_start_ms).any() == step.in_test
        assert (feed.label_seconds[:fed] <= secs[rows[-1]]).all()
        assert fed == len(feed.labels) or feed.label_seconds[fed] > secs[rows[-1]]
        seen += rows.tolist()
    expected = np.flatnonzero((ms >= start) & (ms < window.test_end_ms))
    assert seen == expected.tolist()


def test_history_start_is_the_reach_of_the_windows() -> None:
    window = Window(protocol.day_start_ms(TEST_START))
    reach_days = 7 + 30
    assert (
        window.history_start_ms(FeatureConfig()) == window.test_start_ms - reach_days * 86_400_000
    )


def test_read_back_of_the_file_matches_the_fixture(data_file: Path, history: pd.DataFrame) -> None:
    # guards the tests above: the file they backtest is the frame they compute against
    pd.testing.assert_frame_equal(
        read_transactions(data_file)[list(history.columns)], history, check_dtype=False
    )
