from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import ConfigError
from fraudstream.models import evaluation, train
from fraudstream.models.exceptions import ModelSchemaMismatch, TrainingError
from fraudstream.models.manifest import RUNG_PARTIAL, RUNG_TRUNCATED
from fraudstream.models.params import DEFAULT_PARAMS, TREE_TOLERANCE, Params
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.models.thresholds import ThresholdTargets
from fraudstream.models.validation import tree_counts


@pytest.fixture(scope="module")
def trained(simulated: pd.DataFrame) -> train.TrainResult:
    return train.train(simulated, train.TrainRequest("2018-05-20", folds=2))


def test_default_training_on_a_small_simulated_set_scores_well_on_its_test_window(
    simulated: pd.DataFrame, trained: train.TrainResult, registry: Registry
) -> None:
    version = train.register(registry, trained)
    scorer = Scorer.load(registry, version, "cpu")
    assert evaluation.default_test_start(scorer.manifest) == "2018-06-03"
    window = evaluation.load_test_window(simulated, "2018-06-03")
    result = evaluation.evaluate(scorer, window, k=20)
    assert result.metrics["roc_auc"] > 0.8
    assert result.metrics["average_precision"] > 0.4
    assert result.metrics["transactions"] == len(result.scores) == window.x.shape[0]
    assert result.metrics["excluded_transactions"] > 0


def test_manifest_records_how_the_model_was_made(
    trained: train.TrainResult, registry: Registry
) -> None:
    manifest = registry.manifest(train.register(registry, trained))
    chosen = trained.params.n_trees
    assert manifest.params == dataclasses.replace(DEFAULT_PARAMS, n_trees=chosen).to_dict()
    assert manifest.num_trees == chosen
    assert manifest.feature_names == FeatureConfig().feature_names
    assert manifest.schema_hash == FeatureConfig().schema_hash()
    assert manifest.features == FeatureConfig().describe()
    assert manifest.feature_set_version == 4
    assert manifest.train_window.start == "2018-05-20T00:00:00+00:00"
    assert manifest.train_window.end == "2018-05-27T00:00:00+00:00"
    assert manifest.device == "cpu"
    assert manifest.metrics["validation_folds"] == 2.0
    assert 0.0 < manifest.metrics["validation_average_precision"] < 1.0  # type: ignore[operator]
    folds = manifest.provenance["folds"]
    assert [f["train_start"][:10] for f in folds] == ["2018-05-06", "2018-04-29"]
    assert manifest.provenance["thresholds"]["source"].startswith(
        "validation fold starting 2018-05-06"
    )
    assert manifest.data_fingerprint.startswith(f"{manifest.provenance['train_rows']}:")
    assert 0 < manifest.thresholds.review <= manifest.thresholds.decline <= 1


def test_training_is_deterministic_for_a_seed(
    simulated: pd.DataFrame, trained: train.TrainResult
) -> None:
    again = train.train(simulated, train.TrainRequest("2018-05-20", folds=2))
    assert again.booster.save_raw("ubj") == trained.booster.save_raw("ubj")
    assert again.data_fingerprint == trained.data_fingerprint


def test_tuning_records_its_table_and_uses_the_best(simulated: pd.DataFrame) -> None:
    small = simulated[
        simulated["event_time_ms"] < simulated["event_time_ms"].min() + 60 * 86_400_000
    ]
    result = train.train(small, train.TrainRequest("2018-05-20", folds=1, tune=2, seed=3))
    table = result.provenance["tuning"]
    assert [row["candidate"] for row in table] == [0, 1]
    best = max(table, key=lambda row: row["ap_mean"])
    assert result.params.to_dict() == {k: best[k] for k in DEFAULT_PARAMS.to_dict()}
    assert result.metrics["validation_average_precision"] == pytest.approx(best["ap_mean"])


def test_model_trained_on_other_windows_is_refused_by_the_running_config(
    trained: train.TrainResult, registry: Registry
) -> None:
    version = train.register(registry, trained, FeatureConfig(delay_days=3))
    with pytest.raises(ModelSchemaMismatch, match="feature schema hash"):
        Scorer.load(registry, version, "cpu")


def test_window_without_frauds_is_a_clear_error(simulated: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match=r"training window 2019-01-01..2019-01-08 has 0 "):
        train.train(simulated, train.TrainRequest("2019-01-01"))
    with pytest.raises(TrainingError, match="no transactions before 2018-03-08"):
        train.train(simulated, train.TrainRequest("2018-03-01"))


def test_tune_without_room_for_validation_is_a_clear_error(simulated: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match="--tune needs at least one validation fold"):
        train.train(simulated, train.TrainRequest("2018-04-03", tune=1))


def test_no_validation_room_falls_back_to_in_sample_thresholds(simulated: pd.DataFrame) -> None:
    request = train.TrainRequest(
        "2018-04-03", params=Params(n_trees=5, max_depth=2), targets=ThresholdTargets(10)
    )
    result = train.train(simulated, request)
    assert result.provenance["thresholds"]["source"].startswith("training window (in-sample")
    assert np.isnan(result.metrics["validation_average_precision"])  # type: ignore[arg-type]


def test_params_are_validated() -> None:
    assert Params.from_json('{"max_depth": 3}').max_depth == 3
    with pytest.raises(ConfigError, match=r"unknown training parameter\(s\) \['depth'\]"):
        Params.from_json('{"depth": 3}')
    with pytest.raises(ConfigError, match="'max_depth' must be a whole number, got 2.5"):
        Params.from_json('{"max_depth": 2.5}')
    with pytest.raises(ConfigError, match="'subsample' must be within"):
        Params.from_json('{"subsample": 0}')
    with pytest.raises(ConfigError, match="--params is not valid JSON"):
        Params.from_json("{max_depth: 3}")
    with pytest.raises(ConfigError, match="'early_stopping' must be true or false, got 1"):
        Params.from_json('{"early_stopping": 1}')
    with pytest.raises(ConfigError, match=r"'max_bin' must be within \[16, 65536\], got 8"):
        Params.from_json('{"max_bin": 8}')
    assert Params.from_json('{"early_stopping": false}').early_stopping is False
    assert json.loads(json.dumps(DEFAULT_PARAMS.to_dict()))["n_trees"] == DEFAULT_PARAMS.n_trees


@pytest.mark.parametrize("share", [0.0, DEFAULT_PARAMS.store_outage_share])
def test_the_partial_features_rung_flags_about_as_much_as_the_full_path(
    simulated: pd.DataFrame, trained: train.TrainResult, registry: Registry, share: float
) -> None:
    """Scored as the partial-features rung scores them (every store feature NaN) and decided
    with the partial thresholds of the manifest, transactions are flagged about as often as
    on the full path, with or without the outage rows in training; with the full-path
    thresholds instead, nearly all traffic would be flagged."""
    result = trained
    if share != DEFAULT_PARAMS.store_outage_share:
        params = Params.from_mapping({"store_outage_share": share})
        result = train.train(simulated, train.TrainRequest("2018-05-20", folds=2, params=params))
    scorer = Scorer.load(registry, train.register(registry, result), "cpu")
    assert scorer.manifest.partial_thresholds == result.partial_thresholds
    window = evaluation.load_test_window(simulated, "2018-06-03")
    partial = window.x.copy()
    partial[:, 3:] = np.nan
    flagged_full = np.mean(scorer.decide(scorer.score(window.x)) > 0)
    partial_scores = scorer.score(partial)
    flagged_partial = np.mean(scorer.decide(partial_scores, RUNG_PARTIAL) > 0)
    assert flagged_partial <= max(3 * flagged_full, 0.05), (flagged_partial, flagged_full)
    assert np.mean(scorer.decide(partial_scores) > 0) > 0.5  # the full-path thresholds


def test_the_truncated_rung_has_thresholds_and_a_measured_quality(
    simulated: pd.DataFrame, trained: train.TrainResult, registry: Registry
) -> None:
    """Training records thresholds fitted for the truncated model (same targets as the
    full path's) and both lower rungs' average precision on the validation folds; decided
    with its own thresholds the truncated rung flags about as much as the full path."""
    scorer = Scorer.load(registry, train.register(registry, trained), "cpu")
    manifest = scorer.manifest
    assert manifest.truncated_thresholds == trained.truncated_thresholds
    assert scorer.truncation_trees == max(1, round(manifest.num_trees * 0.25))
    quality = scorer.rung_quality()
    assert quality[RUNG_TRUNCATED] is not None and 0.3 < quality[RUNG_TRUNCATED] < 1.3
    assert quality[RUNG_PARTIAL] is not None and quality[RUNG_PARTIAL] < quality[RUNG_TRUNCATED]
    window = evaluation.load_test_window(simulated, "2018-06-03")
    flagged_full = np.mean(scorer.decide(scorer.score(window.x)) > 0)
    truncated = scorer.score(window.x, trees=scorer.truncation_trees)
    flagged = np.mean(scorer.decide(truncated, RUNG_TRUNCATED) > 0)
    assert flagged <= max(3 * flagged_full, 0.05), (flagged, flagged_full)


def test_early_stopping_keeps_the_fewest_trees_near_the_best_validation_ap(
    trained: train.TrainResult,
) -> None:
    curve = trained.provenance["trees"]["validation_curve"]
    assert [point["trees"] for point in curve] == tree_counts(DEFAULT_PARAMS.n_trees)
    assert tree_counts(DEFAULT_PARAMS.n_trees)[:3] == [25, 50, 75]
    best = max(point["average_precision"] for point in curve)
    near = [p["trees"] for p in curve if p["average_precision"] >= (1 - TREE_TOLERANCE) * best]
    assert trained.params.n_trees == near[0] == trained.booster.num_boosted_rounds()
    assert trained.provenance["trees"]["chosen"] == near[0]
    assert {fold["trees"] for fold in trained.provenance["folds"]} == {near[0]}


def test_without_early_stopping_the_model_has_n_trees(simulated: pd.DataFrame) -> None:
    params = Params(n_trees=30, early_stopping=False)
    result = train.train(simulated, train.TrainRequest("2018-05-20", folds=1, params=params))
    assert result.booster.num_boosted_rounds() == 30
    assert result.params == params
    assert result.provenance["trees"] == {"chosen": 30, "validation_curve": []}


def test_every_booster_of_a_run_starts_from_the_training_fraud_share(
    trained: train.TrainResult,
) -> None:
    share = trained.provenance["train_frauds"] / trained.provenance["train_rows"]
    assert trained.provenance["base_score"] == pytest.approx(share)
    config = json.loads(trained.booster.save_config())
    base = float(config["learner"]["learner_model_param"]["base_score"].strip("[]"))
    assert base == pytest.approx(share, rel=1e-6)


def test_training_reports_progress_per_stage(simulated: pd.DataFrame) -> None:
    calls: list[tuple[str, int, int]] = []
    params = Params(n_trees=10)
    request = train.TrainRequest("2018-05-20", folds=2, params=params)
    train.train(simulated, request, progress=lambda *call: calls.append(call))
    assert calls == [
        ("features", 0, 1),
        ("features", 1, 1),
        ("folds", 1, 2),
        ("folds", 2, 2),
        ("final", 1, 1),
    ]
    calls.clear()
    tuned = dataclasses.replace(request, tune=3, folds=1)
    train.train(simulated, tuned, progress=lambda *call: calls.append(call))
    assert [c for c in calls if c[0] == "tune"] == [("tune", 1, 3), ("tune", 2, 3), ("tune", 3, 3)]
