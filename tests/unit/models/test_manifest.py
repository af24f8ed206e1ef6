from __future__ import annotations

import json
from typing import Any

import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.models.exceptions import ModelCorrupt
from fraudstream.models.manifest import Manifest, Thresholds, TrainWindow


def sample() -> Manifest:
    return Manifest(
        version="v0003",
        created_at="2026-01-02T03:04:05+00:00",
        feature_names=("a", "b"),
        schema_hash="abc123",
        params={"max_depth": 4, "learning_rate": 0.1},
        train_window=TrainWindow("2018-07-25T00:00:00+00:00", "2018-08-01T00:00:00+00:00", 7),
        data_fingerprint="f" * 16,
        metrics={"roc_auc": 0.91, "average_precision": float("nan")},
        thresholds=Thresholds(review=0.2, decline=0.9),
        num_trees=100,
        xgboost_version="3.2.0",
        sha256="0" * 64,
        device="cpu",
        truncation_trees=25,
        features={"feature_set_version": 2, "customer_windows_days": [1, 7], "tz": "UTC"},
        provenance={"tuning": [{"ap": 0.5}]},
    )


def test_json_round_trip_keeps_every_field_and_maps_nan_to_null() -> None:
    manifest = sample()
    text = manifest.to_json()
    assert json.loads(text)["metrics"]["average_precision"] is None
    back = Manifest.from_json(text)
    assert back == Manifest(
        **{**manifest.__dict__, "metrics": {"roc_auc": 0.91, "average_precision": None}}
    )


def mutate(path: str, value: Any) -> str:
    raw = json.loads(sample().to_json())
    *parents, last = path.split(".")
    target = raw
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", "../etc", "field 'version' is not a valid value"),
        ("created_at", "yesterday", "field 'created_at' is not an ISO 8601 time"),
        ("feature_names", [], "field 'feature_names' must be a non-empty list"),
        ("feature_names", ["a", "a"], "field 'feature_names' has duplicate names"),
        ("schema_hash", KeyError, "field 'schema_hash' is missing"),
        ("params", [1], "field 'params' has the wrong type"),
        ("train_window.end", "2018-07-01T00:00:00+00:00", "'train_window.end' must be after"),
        ("metrics.roc_auc", "high", "field 'metrics.roc_auc' must be a number or null"),
        ("thresholds.review", 1.5, "field 'thresholds.review' must be within"),
        ("thresholds.decline", 0.1, "field 'thresholds.decline' (0.1) is below review"),
        ("num_trees", True, "field 'num_trees' has the wrong type"),
        ("num_trees", 0, "field 'num_trees' must be >= 1"),
        ("sha256", "xyz", "field 'sha256' is not a valid value"),
        ("truncation_trees", 101, "field 'truncation_trees' (101) exceeds num_trees"),
        ("format", 99, "field 'format' is 99"),
        ("features", [2], "field 'features' has the wrong type (list)"),
        ("features.feature_set_version", 0, "field 'features.feature_set_version' must be >= 1"),
        ("features.feature_set_version", "2", "'features.feature_set_version' has the wrong type"),
        ("features.feature_set_version", KeyError, "'features.feature_set_version' is missing"),
    ],
)
def test_bad_field_is_refused_naming_it(path: str, value: Any, message: str) -> None:
    with pytest.raises(ModelCorrupt, match=message.replace("(", r"\(").replace(")", r"\)")):
        Manifest.from_json(mutate(path, value), source="m.json")


def test_non_json_and_non_object_are_corrupt() -> None:
    with pytest.raises(ModelCorrupt, match="m.json is not valid JSON"):
        Manifest.from_json(b"\x80\x04pickle", source="m.json")
    with pytest.raises(ModelCorrupt, match="must hold a JSON object, got list"):
        Manifest.from_json("[]", source="m.json")


def test_thresholds_must_be_ordered_probabilities() -> None:
    with pytest.raises(ConfigError, match="0 <= review <= decline <= 1"):
        Thresholds(review=0.9, decline=0.5)
    assert Thresholds(0.0, 1.0).decline == 1.0


def test_feature_set_version_is_read_and_absent_in_older_manifests() -> None:
    assert Manifest.from_json(sample().to_json()).feature_set_version == 2
    older = Manifest.from_json(mutate("features", KeyError))
    assert older.feature_set_version is None
    assert older.features == {}
