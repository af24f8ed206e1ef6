from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from fraudstream.features.datafile import write_transactions
from fraudstream.models import cli, metrics, progress
from fraudstream.models.registry import Registry

SMALL = '{"n_trees": 20, "max_depth": 3}'


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fraudstream")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture(scope="module")
def data(simulated: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tx.parquet"
    write_transactions(simulated, path)
    return path


def train_args(data: Path, registry: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--registry", str(registry), "--train-start",
        "2018-05-20", "--folds", "1", "--params", SMALL, "--device", "auto", *extra,
    ]  # fmt: skip


def test_train_list_show_promote_evaluate_rollback(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # auto must say cpu on a GPU machine too
    registry = tmp_path / "registry"
    assert run(*train_args(data, registry, "--promote")) == 0
    out = capsys.readouterr().out
    assert "device: cpu (no GPU visible" in out
    assert "registered v0001" in out and "promoted v0001" in out
    assert "trees: 20, the fewest within 0.5% of the best mean validation AP (20: 0." in out
    assert run(*train_args(data, registry)) == 0
    capsys.readouterr()
    assert run("models", "list", "--registry", str(registry)) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing[1:]] == ["v0001", "v0002"]
    assert listing[1].split()[1] == "*"
    assert run("models", "promote", "v0002", "--registry", str(registry)) == 0
    capsys.readouterr()
    assert run("models", "show", "v0002", "--registry", str(registry)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v0002" and shown["num_trees"] == 20

    out_json, predictions = tmp_path / "metrics.json", tmp_path / "pred.parquet"
    code = run(
        "evaluate", "--data", str(data), "--registry", str(registry),
        "--out", str(out_json), "--predictions", str(predictions), "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    assert "model v0002, test window 2018-06-03 + 7 days" in capsys.readouterr().out
    written = json.loads(out_json.read_text())
    frame = pd.read_parquet(predictions)
    assert list(frame.columns) == ["transaction_id", "score"]
    assert len(frame) == written["transactions"]
    assert written["version"] == "v0002"
    labels = pd.read_parquet(data)[["transaction_id", "is_fraud"]].astype({"transaction_id": str})
    joined = frame.merge(labels, on="transaction_id", how="left", validate="one_to_one")
    assert joined["is_fraud"].notna().all()
    assert written["frauds"] == joined["is_fraud"].sum()
    assert written["roc_auc"] == pytest.approx(metrics.roc_auc(joined["is_fraud"], joined["score"]))
    assert written["average_precision"] == pytest.approx(
        metrics.average_precision(joined["is_fraud"], joined["score"])
    )

    assert run("models", "rollback", "--registry", str(registry)) == 0
    assert "rolled back to v0001" in capsys.readouterr().out
    assert Registry(registry).current() == "v0001"


def test_tradeoff_writes_table_plot_and_records_truncation(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the cuda column is the gpu tests' job
    registry = tmp_path / "registry"
    assert run(*train_args(data, registry)) == 0
    out_dir = tmp_path / "tradeoff"
    code = run(
        "models", "tradeoff", "v0001", "--registry", str(registry), "--data", str(data),
        "--out-dir", str(out_dir), "--budget-s", "0.01",
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    manifest = Registry(registry).manifest("v0001")
    assert manifest.truncation_trees in (2, 5, 10)
    assert f"recorded truncation_trees={manifest.truncation_trees} in v0001" in out
    assert "cuda not measured: no GPU visible" in out
    assert (out_dir / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out_dir / "tradeoff.md").read_text()
    rows = [line for line in table.splitlines() if line[:3] in ("| 2", "| 5", "| 1")]
    assert [row.split()[1] for row in rows] == ["2", "5", "10", "20"]
    assert table.count("(chosen)") == 1
    assert manifest.provenance["tradeoff"]["chosen_trees"] == manifest.truncation_trees


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "show", "v0042"], "error: no model version 'v0042'"),
        (["models", "rollback"], "error: registry .* has no earlier promotion"),
        (["models", "promote", "nonsense"], "error: no model version 'nonsense'"),
        (["evaluate", "--data", "{data}"], "error: registry .* has no CURRENT model"),
        (["train", "--data", "/no/such/file.csv", "--train-start", "2018-05-20"],
         "error: /no/such/file.csv does not exist"),
        (["train", "--data", "{data}", "--train-start", "2018/05/20"], "error: dates must look"),
        (["train", "--data", "{data}", "--train-start", "2018-05-20", "--device", "cuda"],
         "error: device 'cuda' was requested but no GPU is visible"),
        (["train", "--data", "{data}", "--train-start", "2018-05-20", "--params", "[1]"],
         "error: --params must be a JSON object"),
        (["train", "--data", "{data}", "--train-start", "2018-05-20", "--map", "amount"],
         "error: column map entry 'amount' is not FIELD=COLUMN"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_and_exit_2(
    argv: list[str],
    message: str,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    argv = [a.replace("{data}", str(data)) for a in argv]
    assert run(*argv, "--registry", str(tmp_path / "registry")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert pytest.importorskip("re").match(message, err), err
    assert not (tmp_path / "registry").exists() or not list((tmp_path / "registry").glob("v*"))


def test_progress_bars_draw_on_a_terminal_only() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    with progress.bars(terminal) as report:
        report("folds", 1, 4)
        report("tune", 3, 30)
    drawn = terminal.file.getvalue()
    assert "validation folds" in drawn and "1/4" in drawn
    assert "tuning candidates" in drawn and "3/30" in drawn
    piped = Console(file=io.StringIO(), force_terminal=False)
    with progress.bars(piped) as report:
        report("folds", 1, 4)
    assert piped.file.getvalue() == ""
