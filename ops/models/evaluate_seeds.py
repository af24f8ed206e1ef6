"""The handbook protocol on simulator seeds the project never trained on, per variant.

    .venv/bin/python ops/models/evaluate_seeds.py [--seeds 101 102 103 104 105]
        [--train-start 2018-07-25] [--variants NAME ...] [--json FILE] [--readme FILE]
    .venv/bin/python ops/models/evaluate_seeds.py --from-json FILE [FILE ...] [--readme FILE]

Each seed is the default simulated world (``fraudstream simulate --seed N``). Every
variant (``variants.py``) is trained as ``fraudstream train`` trains (7 training days,
4 prequential folds that choose the trees and the thresholds) from ``--train-start``, and
tested on the 7 days after the 7-day label delay with known-compromised cards removed
(``fraudstream.models.protocol``). Parameters are chosen on the folds; the test window only reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ablation_table
import numpy as np
import numpy.typing as npt
import pandas as pd
import store_prototypes
import xgboost as xgb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from variants import VARIANTS, Variant

from fraudstream.features.definitions import FEATURE_NAMES, FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models import metrics, protocol
from fraudstream.models.dataset import Dataset
from fraudstream.models.manifest import json_safe
from fraudstream.models.protocol import DAY_MS, EvalSet, Split
from fraudstream.models.train import TrainRequest, TrainResult, train_on
from fraudstream.models.validation import score_partial

SEEDS = (101, 102, 103, 104, 105)
"""Simulator seeds of the table; the project's own data and earlier tuning used seed 0."""
PROTOCOL_DAYS = 21
"""Training, label delay and test days after ``--train-start``."""


@dataclass(frozen=True)
class World:
    """One seed's transactions up to the end of the test window, with every column a
    variant may use."""

    seed: int
    """Simulator seed."""
    df: pd.DataFrame
    """Transactions before the end of the test window."""
    columns: dict[str, npt.NDArray[np.float64]]
    """Feature set 2 and the store prototypes asked for, by name."""
    groups: dict[str, tuple[str, ...]]
    """Store prototype group -> its column names."""


def build_world(seed: int, train_start: str, prototypes: set[str]) -> World:
    """Simulate, cut at the test window's end, compute the features and prototypes."""
    end = protocol.day_start_ms(train_start) + PROTOCOL_DAYS * DAY_MS
    df = simulate(SimulatorConfig(seed=seed))
    df = df[df["event_time_ms"] < end].reset_index(drop=True)
    x = compute_features(df, FeatureConfig())
    columns = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    groups: dict[str, tuple[str, ...]] = {}
    for group in sorted(prototypes):
        made = store_prototypes.PROTOTYPES[group](df)
        columns.update(made)
        groups[group] = tuple(made)
    return World(seed, df, columns, groups)


@dataclass(frozen=True)
class Trained:
    """A variant's model and what ``measure`` needs of it."""

    result: TrainResult
    """As ``fraudstream train`` would register it."""
    x_test: npt.NDArray[np.float32]
    """Its features of the test window's kept rows."""
    split: Split
    """The protocol split from ``--train-start``."""
    seconds: float
    """Training time."""


def train_variant(world: World, variant: Variant, train_start: str) -> Trained:
    """Train ``variant`` on ``world`` as ``fraudstream train`` does."""
    names = (*variant.features, *[n for g in variant.prototypes for n in world.groups[g]])
    x = np.column_stack([world.columns[n] for n in names]).astype(np.float32)
    data = Dataset(world.df, x, world.df["is_fraud"].to_numpy().astype(np.int8))
    began = time.perf_counter()
    result = train_on(data, TrainRequest(train_start, params=variant.params), names)
    split = protocol.split(world.df, train_start)
    return Trained(result, x[split.test_rows], split, time.perf_counter() - began)


def measure(world: World, trained: Trained, card_ranking: str) -> dict[str, float]:
    """Test-window metrics of a trained variant, and its validation figures."""
    booster, rows = trained.result.booster, trained.split.test_rows
    test = protocol.eval_set(world.df, trained.split)
    scores = np.asarray(booster.inplace_predict(trained.x_test), dtype=np.float64)
    partial = score_partial(booster, trained.x_test)
    validation = trained.result.metrics["validation_average_precision"]
    return {
        **window_metrics(test, scores, card_ranking),
        **auc_loss_by_fraud_kind(world, rows, scores),
        "partial_features_average_precision": metrics.average_precision(test.y, partial),
        "validation_average_precision": float("nan") if validation is None else validation,
        "trees": float(trained.result.params.n_trees),
        "train_seconds": trained.seconds,
    }


def window_metrics(
    test: EvalSet, scores: npt.NDArray[np.float64], ranking: str
) -> dict[str, float]:
    """Ranking and calibration metrics of ``scores`` on the test window."""
    cards = card_scores(test, scores) if ranking == "noisy_or" else scores
    card = metrics.card_precision_at_k(test.day, test.customer, test.y, cards, 100)
    return {
        "roc_auc": metrics.roc_auc(test.y, scores),
        "average_precision": metrics.average_precision(test.y, scores),
        "card_precision_at_100": card.mean,
        "calibration_ratio": metrics.calibration_ratio(test.y, scores),
        "expected_calibration_error": metrics.expected_calibration_error(test.y, scores),
    }


def auc_loss_by_fraud_kind(
    world: World, rows: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]
) -> dict[str, float]:
    """1 - ROC AUC split by the kind of fraud that is ranked below legitimate transactions:
    per kind, the share of (fraud, legitimate) pairs in the wrong order with a fraud of that
    kind (the values add up to 1 - AUC, ties counted half). Kinds: amount over 220,
    compromised terminal with a known fraud in a delayed window ('visible') or without,
    compromised card."""
    scenario = world.df["fraud_scenario"].to_numpy()[rows]
    risk = np.max([world.columns[f"terminal_risk_{w}d"][rows] for w in (1, 7, 30)], axis=0)
    fraud = scenario > 0
    legit = np.sort(scores[~fraud])
    below = np.searchsorted(legit, scores[fraud], side="left")
    ties = np.searchsorted(legit, scores[fraud], side="right") - below
    wrong = (legit.size - below - ties + ties / 2) / (legit.size * fraud.sum())
    kinds = {
        "amount": scenario[fraud] == 1,
        "terminal_visible": (scenario[fraud] == 2) & (risk[fraud] > 0),
        "terminal_unseen": (scenario[fraud] == 2) & (risk[fraud] == 0),
        "card": scenario[fraud] == 3,
    }
    out = {f"auc_loss_{kind}": float(wrong[mask].sum()) for kind, mask in kinds.items()}
    out.update({f"fraud_share_{kind}": float(mask.mean()) for kind, mask in kinds.items()})
    return out


def card_scores(test: EvalSet, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each transaction's card-day score 1 - prod(1 - p): the chance that at least one of
    the card's transactions that day is a fraud, if they were independent."""
    frame = pd.DataFrame({"day": test.day, "card": test.customer})
    frame["log_safe"] = np.log1p(-np.minimum(scores, 1 - 1e-12))
    total = frame.groupby(["day", "card"], sort=False)["log_safe"].transform("sum")
    return np.asarray(-np.expm1(total.to_numpy()), dtype=np.float64)


@contextmanager
def progress_bar(total: int) -> Iterator[Any]:
    """A rich bar on stderr over every (seed, variant) run."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("ablation", total=total)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        yield advance, progress


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_json:
        args.seeds, runs = merge_runs([json.loads(p.read_text()) for p in args.from_json])
        args.variants, args.json = list(runs), None
    else:
        runs = run_all(args)
    variants = {name: VARIANTS[name] for name in args.variants}
    summaries = ablation_table.summarize(runs, variants)
    table = ablation_table.markdown(summaries, variants, args.seeds)
    print(table, end="")
    _write(args, runs, summaries, table)
    return 0


def merge_runs(saved: list[dict[str, Any]]) -> tuple[list[int], dict[str, Any]]:
    """The seeds and the runs of several ``--json`` files, in table (``VARIANTS``) order;
    a variant in several files is taken from the last. Files of other seeds are refused:
    paired differences need the same seeds in every row."""
    seeds = list(saved[0]["seeds"])
    merged: dict[str, Any] = {}
    for blob in saved:
        if list(blob["seeds"]) != seeds:
            msg = f"--from-json files cover seeds {seeds} and {blob['seeds']}: merge equal seeds"
            raise SystemExit(msg)
        merged.update(blob["runs"])
    unknown = sorted(set(merged) - set(VARIANTS))
    if unknown:
        msg = f"--from-json: variants {', '.join(unknown)} are not in variants.py"
        raise SystemExit(msg)
    return seeds, {name: merged[name] for name in VARIANTS if name in merged}


def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Every chosen variant on every seed: metrics per variant, in seed order."""
    xgb.set_config(nthread=args.nthread)
    chosen = [VARIANTS[name] for name in args.variants]
    prototypes = {g for v in chosen for g in v.prototypes}
    runs: dict[str, list[dict[str, float]]] = {v.name: [] for v in chosen}
    with progress_bar(len(args.seeds) * len(chosen)) as (advance, progress):
        for seed in args.seeds:
            progress.console.log(f"seed {seed}: simulating and computing features")
            world = build_world(seed, args.train_start, prototypes)
            models: dict[Any, Trained] = {}
            for variant in chosen:
                if variant.model_key not in models:
                    models[variant.model_key] = train_variant(world, variant, args.train_start)
                trained = models[variant.model_key]
                runs[variant.name].append(measure(world, trained, variant.card_ranking))
                advance(f"seed {seed} {variant.name}")
            _checkpoint(args, seed, runs)
    return runs


def _checkpoint(args: argparse.Namespace, seed: int, runs: Any) -> None:
    """Write the seeds done so far to ``--json`` (``"partial": true``), so an interrupted
    run keeps them; ``--from-json`` makes a table of them."""
    if not args.json:
        return
    done = args.seeds[: args.seeds.index(seed) + 1]
    blob = {"seeds": done, "train_start": args.train_start, "runs": runs,
            "variants": args.variants, "partial": done != args.seeds}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(json_safe(blob), indent=2, allow_nan=False) + "\n")


def _write(args: argparse.Namespace, runs: Any, summaries: Any, table: str) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        blob = {"seeds": args.seeds, "train_start": args.train_start, "runs": runs,
                "summary": summaries, "variants": args.variants}  # fmt: skip
        args.json.write_text(json.dumps(json_safe(blob), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.readme:
        ablation_table.update_readme(args.readme, table)
        print(f"updated {args.readme}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--train-start", default="2018-07-25", metavar="YYYY-MM-DD")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--json", type=Path, help="per-seed results and summaries")
    p.add_argument("--readme", type=Path, help="replace the table between the markers")
    p.add_argument("--nthread", type=int, default=2, help="XGBoost threads")
    p.add_argument(
        "--from-json", type=Path, nargs="+", help="redo the table from --json files (merged)"
    )
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
