"""Command-line entry points of ``models``: ``train``, ``evaluate`` and ``models ...``.

``register(subparsers)`` adds them to the ``fraudstream`` parser; each command sets
``func(args) -> int``. Expected failures print one ``error: ...`` line and return 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fraudstream.features.datafile import parse_column_map, read_transactions
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import FraudstreamError
from fraudstream.models import evaluation, progress, tradeoff, train
from fraudstream.models.device import choose_device
from fraudstream.models.manifest import json_safe
from fraudstream.models.params import TREE_TOLERANCE, Params
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.models.thresholds import ThresholdTargets

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # argparse._SubParsersAction is not subscriptable at runtime on 3.11
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
Command = Callable[[argparse.Namespace], int]


def register(subparsers: SubParsers) -> None:
    """Add ``train``, ``evaluate`` and ``models`` (list/show/promote/rollback/tradeoff)."""
    _add_train(subparsers)
    _add_evaluate(subparsers)
    models = subparsers.add_parser("models", help="inspect and manage the model registry")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    _add_registry(sub.add_parser("list", help="list registered versions")).set_defaults(func=_list)
    show = _add_registry(sub.add_parser("show", help="print a version's manifest"))
    show.add_argument("version", help="registry version, e.g. 20261203-101500")
    show.set_defaults(func=_show)
    promote = _add_registry(sub.add_parser("promote", help="make a version CURRENT"))
    promote.add_argument("version", help="registry version to make CURRENT")
    promote.set_defaults(func=_promote)
    rollback = _add_registry(sub.add_parser("rollback", help="re-promote the previous version"))
    rollback.set_defaults(func=_rollback)
    _add_tradeoff(sub)


def _add_registry(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--registry", required=True, type=Path, metavar="DIR", help="model registry directory"
    )
    return parser


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="PATH",
        help="transactions file or folder (Parquet, CSV, JSON Lines)",
    )
    parser.add_argument("--map", default="", metavar="FIELD=COLUMN,...", help="column map")


def _add_train(subparsers: SubParsers) -> None:
    p = subparsers.add_parser("train", help="train, validate and register a model")
    _add_data(p)
    _add_registry(p)
    p.add_argument(
        "--train-start",
        required=True,
        metavar="YYYY-MM-DD",
        help="first day of the training window",
    )
    p.add_argument("--train-days", type=int, default=7, help="days of training data")
    p.add_argument(
        "--delay-days",
        type=int,
        default=7,
        help="days between training and validation (label delay)",
    )
    p.add_argument("--folds", type=int, default=4, help="prequential validation folds")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--params", metavar="JSON", help="e.g. '{\"max_depth\": 4}'")
    how.add_argument("--tune", type=int, default=0, metavar="N", help="random search of N sets")
    p.add_argument("--seed", type=int, default=0, help="random seed of training and tuning")
    p.add_argument("--review-per-day", type=int, default=100, help="review target (customers)")
    p.add_argument(
        "--decline-precision", type=float, default=0.9, help="validation precision of declines"
    )
    p.add_argument("--promote", action="store_true", help="make the new version CURRENT")
    p.set_defaults(func=_train)


def _add_evaluate(subparsers: SubParsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a model on a test window")
    _add_data(p)
    _add_registry(p)
    p.add_argument("--model", metavar="VERSION", help="default: CURRENT")
    p.add_argument("--test-start", metavar="YYYY-MM-DD", help="default: the model's own")
    p.add_argument("--train-days", type=int, default=7, help="days of history before the test")
    p.add_argument("--delay-days", type=int, help="default: the model's")
    p.add_argument("--test-days", type=int, default=7, help="days of the test window")
    p.add_argument("--k", type=int, default=100, help="k of card precision at k")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, metavar="FILE", help="metrics as JSON")
    p.add_argument("--predictions", type=Path, metavar="FILE", help="ids and scores, Parquet")
    p.set_defaults(func=_evaluate)


def _add_tradeoff(sub: SubParsers) -> None:
    p = _add_registry(sub.add_parser("tradeoff", help="accuracy against speed of truncation"))
    p.add_argument("version", help="registry version to measure")
    _add_data(p)
    p.add_argument("--test-start", metavar="YYYY-MM-DD", help="default: the model's own")
    p.add_argument("--out-dir", type=Path, help="default: var/tradeoff/VERSION")
    p.add_argument("--budget-s", type=float, default=0.5, help="timing seconds per cell")
    p.set_defaults(func=_tradeoff)


def guarded(command: Command) -> Command:
    """Turn expected failures into one ``error:`` line on stderr and exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except FraudstreamError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    return run


def _read(args: argparse.Namespace) -> pd.DataFrame:
    column_map = parse_column_map(args.map) if args.map else None
    return read_transactions(args.data, column_map)


@guarded
def _train(args: argparse.Namespace) -> int:
    device, why = choose_device(args.device)
    print(f"device: {device} ({why})")
    request = train.TrainRequest(
        train_start=args.train_start,
        train_days=args.train_days,
        delay_days=args.delay_days,
        folds=args.folds,
        params=Params.from_json(args.params) if args.params else None,
        tune=args.tune,
        seed=args.seed,
        device=device,
        targets=ThresholdTargets(args.review_per_day, args.decline_precision),
    )
    registry = Registry(args.registry)
    with progress.bars() as report:
        result = train.train(_read(args), request, progress=report)
    version = train.register(registry, result)
    _print_training(result, version)
    if args.promote:
        registry.promote(version)
        print(f"promoted {version}")
    return 0


def _print_training(result: train.TrainResult, version: str) -> None:
    if result.provenance["tuning"]:
        table = result.provenance["tuning"]
        keys = ["candidate", *result.params.to_dict(), "ap_mean", "auc_mean", "seconds"]
        print(_table(keys, [[row[k] for k in keys] for row in table]))
    print(f"params: {json.dumps(result.params.to_dict())}")
    curve = result.provenance["trees"]["validation_curve"]
    if curve:
        counts = ", ".join(f"{p['trees']}: {p['average_precision']:.4f}" for p in curve)
        print(
            f"trees: {result.params.n_trees}, the fewest within {TREE_TOLERANCE:.1%} of the "
            f"best mean validation AP ({counts})"
        )
    folds = result.provenance["folds"]
    print(
        _table(
            ["fold train start", "avg precision", "roc auc", "card precision"],
            [
                [f["train_start"][:10], f["average_precision"], f["roc_auc"], f["card_precision"]]
                for f in folds
            ],
        )
    )
    chosen = result.thresholds
    print(f"thresholds: review {chosen.review:.4f}, decline {chosen.decline:.4f}")
    for name, rung in (
        ("truncated-model", result.truncated_thresholds),
        ("partial-features", result.partial_thresholds),
    ):
        print(f"{name} rung thresholds: review {rung.review:.4f}, decline {rung.decline:.4f}")
    print(f"registered {version}")


@guarded
def _evaluate(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    scorer = Scorer.load(registry, args.model, args.device)
    manifest = scorer.manifest
    test_start = args.test_start or evaluation.default_test_start(manifest)
    delay = manifest.train_window.delay_days if args.delay_days is None else args.delay_days
    with progress.bars() as report:
        report("features", 0, 1)
        window = evaluation.load_test_window(
            _read(args), test_start, args.train_days, delay, args.test_days, FeatureConfig()
        )
        report("features", 1, 1)
        result = evaluation.evaluate(scorer, window, args.k, report)
    print(f"model {result.version}, test window {test_start} + {args.test_days} days")
    print(_table(["metric", "value"], [[k, v] for k, v in result.metrics.items()]))
    if args.out:
        blob = json.dumps(
            json_safe({"version": result.version, "test_start": test_start, **result.metrics}),
            indent=2,
            allow_nan=False,
        )
        evaluation.write_atomically(args.out, lambda t: t.write_text(blob + "\n"))
        print(f"wrote {args.out}")
    if args.predictions:
        evaluation.write_predictions(args.predictions, result)
        print(f"wrote {args.predictions} ({len(result.scores)} rows)")
    return 0


@guarded
def _list(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    current = registry.current()
    rows = []
    for version in registry.versions():
        m = registry.manifest(version)
        rows.append(
            [
                f"{version}{' *' if version == current else ''}",
                m.created_at,
                f"{m.train_window.start[:10]}..{m.train_window.end[:10]}",
                m.num_trees,
                m.truncation_trees if m.truncation_trees is not None else "-",
                m.metrics.get("validation_average_precision"),
                f"{m.thresholds.review:.3f}/{m.thresholds.decline:.3f}",
            ]
        )
    if not rows:
        print(f"no models in {registry.root}")
        return 0
    heads = ["version", "created", "train window", "trees", "truncated", "valid AP", "thresholds"]
    print(_table(heads, rows))
    return 0


@guarded
def _show(args: argparse.Namespace) -> int:
    print(Registry(args.registry).manifest(args.version).to_json(), end="")
    return 0


@guarded
def _promote(args: argparse.Namespace) -> int:
    Registry(args.registry).promote(args.version)
    print(f"promoted {args.version}")
    return 0


@guarded
def _rollback(args: argparse.Namespace) -> int:
    print(f"rolled back to {Registry(args.registry).rollback()}")
    return 0


@guarded
def _tradeoff(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    scorers, notes = _tradeoff_scorers(registry, args.version)
    test_start = args.test_start or evaluation.default_test_start(scorers[0].manifest)
    delay = scorers[0].manifest.train_window.delay_days
    with progress.bars() as report:
        report("features", 0, 1)
        window = evaluation.load_test_window(_read(args), test_start, delay_days=delay)
        report("features", 1, 1)
        rows = tradeoff.measure(scorers, window, budget_s=args.budget_s, progress=report)
    result = tradeoff.report(args.version, rows, notes)
    out_dir = args.out_dir or Path("var") / "tradeoff" / args.version
    paths = tradeoff.write(result, out_dir)
    old = registry.manifest(args.version)
    thresholds, quality = tradeoff.truncated_rung(scorers[0], window, result)
    registry.amend(
        args.version,
        truncation_trees=result.chosen_trees,
        truncated_thresholds=thresholds,
        metrics={**old.metrics, **quality},
        provenance={**old.provenance, "tradeoff": json_safe(_summary(result, test_start))},
    )
    print(tradeoff.markdown(result), end="")
    print(
        f"recorded truncation_trees={result.chosen_trees} in {args.version}, with its "
        f"thresholds: review {thresholds.review:.4f}, decline {thresholds.decline:.4f}"
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _tradeoff_scorers(registry: Registry, version: str) -> tuple[list[Scorer], list[str]]:
    scorers = [Scorer.load(registry, version, "cpu")]
    gpu, why = choose_device("auto", need_cupy=True)
    if gpu == "cpu":
        return scorers, [f"cuda not measured: {why}"]
    scorers.append(Scorer.load(registry, version, gpu))
    return scorers, []


def _summary(result: tradeoff.TradeoffReport, test_start: str) -> dict[str, Any]:
    return {
        "test_start": test_start,
        "chosen_trees": result.chosen_trees,
        "within_tolerance": result.within_tolerance,
        "rows": [
            {"trees": r.trees, "average_precision": r.average_precision, "roc_auc": r.roc_auc}
            for r in result.rows
        ],
    }


def _table(heads: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in heads], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(heads))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


if __name__ == "__main__":  # pragma: no cover - for use before fraudstream.stream.cli wires it in
    parser = argparse.ArgumentParser(prog="fraudstream")
    register(parser.add_subparsers(dest="command", required=True))
    logging.basicConfig(level=logging.INFO)
    parsed = parser.parse_args()
    sys.exit(parsed.func(parsed))
