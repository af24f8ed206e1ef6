"""The manifest stored next to every registered model, and its JSON form.

A manifest says what a model is (feature names, feature set version and windows, schema
hash, parameters, training window, data fingerprint, checksum) and how to use it
(thresholds, truncation level).
``Manifest.from_json`` validates every field; a bad one raises ``ModelCorrupt`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from fraudstream.features.exceptions import ConfigError
from fraudstream.models.exceptions import ModelCorrupt

FORMAT = 1
RUNG_TRUNCATED = "truncated_model"
"""The ladder's rung scoring with the first ``truncation_trees`` trees."""
RUNG_PARTIAL = "partial_features"
"""The ladder's rung scoring with every store feature missing."""
TRUNCATION_SHARE = 0.25
"""Share of trees of the truncated rung when no level was measured (``models tradeoff``)."""
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_VERSION_RE = re.compile(r"^v\d{4,}$")


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds turning a probability into approve / review / decline."""

    review: float
    """Scores at or above this (and below ``decline``) go to manual review."""
    decline: float
    """Scores at or above this are declined; always >= ``review``."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.decline <= 1.0:
            msg = f"thresholds need 0 <= review <= decline <= 1, got {self.review}, {self.decline}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class TrainWindow:
    """The training window of a model and the label delay used around it."""

    start: str
    """Inclusive start, ISO 8601 UTC."""
    end: str
    """Exclusive end, ISO 8601 UTC."""
    delay_days: int = 7
    """Days between the window's end and the first test day (the label delay)."""


@dataclass(frozen=True)
class Manifest:
    """Everything the registry records about one model version."""

    version: str
    """Registry version, ``v0001``, ``v0002``... (sortable by number)."""
    created_at: str
    """When the model was registered, ISO 8601 UTC."""
    feature_names: tuple[str, ...]
    """Feature names in the model's column order."""
    schema_hash: str
    """``FeatureConfig.schema_hash()`` of the features the model was trained on."""
    params: Mapping[str, Any]
    """Training parameters (``fraudstream.models.params.Params`` as a dict)."""
    train_window: TrainWindow
    """Training window and label delay."""
    data_fingerprint: str
    """Hash of the training rows, to tell whether two models saw the same data."""
    metrics: Mapping[str, float | None]
    """Validation (and, when known, test) metrics; None where undefined."""
    thresholds: Thresholds
    """Decision thresholds chosen on validation data."""
    num_trees: int
    """Boosting rounds in the model file."""
    xgboost_version: str
    """XGBoost version that wrote the model."""
    sha256: str
    """SHA-256 of ``model.ubj``; checked on every load."""
    device: str
    """Device the model was trained on."""
    truncation_trees: int | None = None
    """Trees used by the truncated rung (set by ``models tradeoff``); None = not measured."""
    partial_thresholds: Thresholds | None = None
    """Thresholds for scores made with every store feature missing (the partial-features
    rung), chosen on validation data scored that way; None = use ``thresholds``."""
    truncated_thresholds: Thresholds | None = None
    """Thresholds for scores of the first ``truncated_trees()`` trees (the truncated rung),
    chosen for the same targets on validation data scored that way; None (a manifest
    written before they existed): the truncated rung is off for this model."""
    features: Mapping[str, Any] = field(default_factory=dict)
    """``FeatureConfig.describe()`` of the features: feature set version, windows, delay
    and time zone; empty in manifests written before it was recorded (feature set 1)."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Free-form record of how the model was made (tuning table, threshold choice...)."""

    def truncated_trees(self) -> int:
        """Trees of the truncated rung: the measured level, else ``TRUNCATION_SHARE``."""
        return self.truncation_trees or default_truncation(self.num_trees)

    @property
    def feature_set_version(self) -> int | None:
        """The feature set the model was trained on; None when the manifest does not say."""
        value = self.features.get("feature_set_version")
        return None if value is None else int(value)

    def rung_thresholds(self, rung: str | None) -> Thresholds | None:
        """The thresholds of a ladder rung (None: the full path); None when the manifest
        has none for it (the truncated rung of an older manifest)."""
        if rung == RUNG_TRUNCATED:
            return self.truncated_thresholds
        if rung == RUNG_PARTIAL:
            return self.partial_thresholds or self.thresholds
        return self.thresholds

    def rung_quality(self, rung: str) -> float | None:
        """Average precision of ``rung`` relative to the full path's, measured on the same
        window (``models tradeoff``'s test window for the truncated rung when it ran, else
        the validation folds); None when not measured."""
        m = self.metrics
        for prefix in ("tradeoff", "validation"):
            full = m.get(f"{prefix}_average_precision")
            own = m.get(f"{prefix}_average_precision_{rung}")
            if full is not None and own is not None and full > 0:
                return float(own) / float(full)
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, NaN metrics as None."""
        out = dataclasses.asdict(self)
        out["feature_names"] = list(self.feature_names)
        out["metrics"] = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        out["provenance"] = json_safe(dict(self.provenance))
        out["format"] = FORMAT
        return out

    def to_json(self) -> str:
        """Indented, key-sorted JSON (strict: no NaN)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "manifest.json") -> Manifest:
        """Parse and validate; any problem raises ``ModelCorrupt`` naming the field."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{source} is not valid JSON ({exc}); re-register the model or restore the file"
            raise ModelCorrupt(msg) from exc
        if not isinstance(raw, dict):
            msg = f"{source} must hold a JSON object, got {type(raw).__name__}"
            raise ModelCorrupt(msg)
        return _Reader(raw, source).manifest()


def default_truncation(num_trees: int) -> int:
    """Trees of the truncated rung when no level was measured."""
    return max(1, round(num_trees * TRUNCATION_SHARE))


def json_safe(value: Any) -> Any:
    """``value`` with NaN / infinite floats replaced by None, tuples as lists."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class _Reader:
    """Typed access to a raw manifest dict; each failure names the field."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def fail(self, name: str, problem: str) -> NoReturn:
        msg = f"{self.source}: field {name!r} {problem}; "
        msg += "re-register the model (fraudstream train) or restore the file"
        raise ModelCorrupt(msg)

    def get(
        self, name: str, kind: type | tuple[type, ...], raw: Mapping[str, Any] | None = None
    ) -> Any:
        src = self.raw if raw is None else raw
        if name.split(".")[-1] not in src:
            self.fail(name, "is missing")
        value = src[name.split(".")[-1]]
        bad_bool = isinstance(value, bool) and bool not in _as_tuple(kind)
        if bad_bool or not isinstance(value, kind):
            self.fail(name, f"has the wrong type ({type(value).__name__})")
        return value

    def text(self, name: str, pattern: re.Pattern[str] | None = None) -> str:
        value: str = self.get(name, str)
        if not value or (pattern is not None and not pattern.match(value)):
            self.fail(name, f"is not a valid value ({value!r})")
        return value

    def timestamp(self, name: str, raw: Mapping[str, Any] | None = None) -> str:
        value: str = self.get(name, str, raw)
        if not _is_iso(value):
            self.fail(name, f"is not an ISO 8601 time ({value!r})")
        return value

    def count(self, name: str, raw: Mapping[str, Any] | None = None, minimum: int = 1) -> int:
        value: int = self.get(name, int, raw)
        if value < minimum:
            self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def probability(self, name: str, raw: Mapping[str, Any]) -> float:
        value = float(self.get(name, (int, float), raw))
        if not 0.0 <= value <= 1.0:
            self.fail(name, f"must be within [0, 1], got {value}")
        return value

    def manifest(self) -> Manifest:
        if self.raw.get("format", FORMAT) != FORMAT:
            self.fail("format", f"is {self.raw.get('format')!r}, this build reads {FORMAT}")
        num_trees = self.count("num_trees")
        return Manifest(
            version=self.text("version", _VERSION_RE),
            created_at=self.timestamp("created_at"),
            feature_names=self.feature_names(),
            schema_hash=self.text("schema_hash"),
            params=self.get("params", dict),
            train_window=self.train_window(),
            data_fingerprint=self.text("data_fingerprint"),
            metrics=self.metrics(),
            thresholds=self.thresholds(),
            num_trees=num_trees,
            xgboost_version=self.text("xgboost_version"),
            sha256=self.text("sha256", _SHA_RE),
            device=self.text("device"),
            truncation_trees=self.truncation(num_trees),
            partial_thresholds=self.optional_thresholds("partial_thresholds"),
            truncated_thresholds=self.optional_thresholds("truncated_thresholds"),
            features=self.features(),
            provenance=self.raw.get("provenance") or {},
        )

    def feature_names(self) -> tuple[str, ...]:
        names = self.get("feature_names", list)
        if not names or not all(isinstance(n, str) and n for n in names):
            self.fail("feature_names", "must be a non-empty list of names")
        if len(set(names)) != len(names):
            self.fail("feature_names", "has duplicate names")
        return tuple(names)

    def features(self) -> dict[str, Any]:
        raw = self.raw.get("features") or {}
        if not isinstance(raw, dict):
            self.fail("features", f"has the wrong type ({type(raw).__name__})")
        if raw:
            self.count("features.feature_set_version", raw)
        return dict(raw)

    def train_window(self) -> TrainWindow:
        raw = self.get("train_window", dict)
        start = self.timestamp("train_window.start", raw)
        end = self.timestamp("train_window.end", raw)
        first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
        if (first.tzinfo is None) != (last.tzinfo is None):
            self.fail("train_window", "start and end must both carry a UTC offset or neither")
        if last <= first:
            self.fail("train_window.end", "must be after train_window.start")
        delay = self.count("train_window.delay_days", raw, minimum=0)
        return TrainWindow(start, end, delay)

    def metrics(self) -> dict[str, float | None]:
        raw = self.get("metrics", dict)
        out: dict[str, float | None] = {}
        for key, value in raw.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not number:
                self.fail(f"metrics.{key}", f"must be a number or null, got {value!r}")
            out[key] = None if value is None else float(value)
        return out

    def thresholds(self, key: str = "thresholds") -> Thresholds:
        raw = self.get(key, dict)
        review = self.probability(f"{key}.review", raw)
        decline = self.probability(f"{key}.decline", raw)
        if decline < review:
            self.fail(f"{key}.decline", f"({decline}) is below review ({review})")
        return Thresholds(review, decline)

    def optional_thresholds(self, key: str) -> Thresholds | None:
        return self.thresholds(key) if self.raw.get(key) is not None else None

    def truncation(self, num_trees: int) -> int | None:
        value = self.raw.get("truncation_trees")
        if value is None:
            return None
        trees = self.count("truncation_trees")
        if trees > num_trees:
            self.fail("truncation_trees", f"({trees}) exceeds num_trees ({num_trees})")
        return trees


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _is_iso(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
