"""Training parameters: the defaults users get, validation of ``--params``, the search space.

``DEFAULT_PARAMS``: the tree parameters are the candidate of ``fraudstream train --tune 30
--seed 0`` (the simulator's default dataset, ``--train-start 2018-07-25``) with the best
mean validation average precision over the prequential folds of simulator seeds 101-105;
bins, class weight, early stopping and the outage rows are the levers the ablation on
those seeds supports. ``models/README.md`` has the tables and the commands.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.features.exceptions import ConfigError


@dataclass(frozen=True)
class Params:
    """XGBoost settings a model is trained with (objective and tree method are fixed)."""

    n_trees: int = 200
    """Boosting rounds; with ``early_stopping``, the most the validation folds may choose."""
    max_depth: int = 6
    """Maximum tree depth."""
    learning_rate: float = 0.0734
    """Shrinkage per round (eta)."""
    subsample: float = 0.62
    """Share of rows sampled per tree."""
    colsample_bytree: float = 0.9
    """Share of features sampled per tree."""
    scale_pos_weight: float = 1.0
    """Weight of the fraud class. 1 keeps scores calibrated (a score of 0.3 means about
    30 % of such transactions are frauds); heavier weights inflate them."""
    min_child_weight: float = 1.0
    """Minimum hessian sum in a leaf."""
    max_bin: int = 4096
    """Histogram bins per feature. XGBoost's 256 puts the amounts around a hard limit
    (frauds above 220 in the handbook's data) into one bin with legitimate ones."""
    early_stopping: bool = True
    """Choose the number of trees (a multiple of ``TREE_STEP`` up to ``n_trees``) by mean
    validation average precision over the prequential folds: the fewest trees within
    ``TREE_TOLERANCE`` of the best. Needs at least one fold; without one, ``n_trees``."""
    store_outage_share: float = 0.1
    """Share of training rows added once more with every store feature missing (NaN), so
    the trees learn where missing store features go: the partial-features rung (store down
    or too slow) then scores on the transaction-level features instead of sending every
    transaction one way. Not an XGBoost parameter; 0 turns it off."""

    def __post_init__(self) -> None:
        _check_range("n_trees", self.n_trees, 1, 100_000)
        _check_range("max_depth", self.max_depth, 1, 20)
        _check_range("learning_rate", self.learning_rate, 1e-4, 1.0)
        _check_range("subsample", self.subsample, 0.05, 1.0)
        _check_range("colsample_bytree", self.colsample_bytree, 0.05, 1.0)
        _check_range("scale_pos_weight", self.scale_pos_weight, 0.01, 1000.0)
        _check_range("min_child_weight", self.min_child_weight, 0.0, 1000.0)
        _check_range("max_bin", self.max_bin, 16, 65_536)
        _check_range("store_outage_share", self.store_outage_share, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the manifest's ``params``)."""
        return dataclasses.asdict(self)

    def booster_params(self, device: str, seed: int, nthread: int | None = None) -> dict[str, Any]:
        """The parameter dict for ``xgboost.train`` (rounds are passed separately)."""
        out: dict[str, Any] = {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "eval_metric": "aucpr",
            "device": device,
            "seed": seed,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "scale_pos_weight": self.scale_pos_weight,
            "min_child_weight": self.min_child_weight,
            "max_bin": self.max_bin,
        }
        if nthread is not None:
            out["nthread"] = nthread
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Params | None = None) -> Params:
        """``base`` (default ``DEFAULT_PARAMS``) with ``values`` applied; unknown keys refused."""
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known.keys())
        if unknown:
            msg = f"unknown training parameter(s) {unknown}; known: {sorted(known)}"
            raise ConfigError(msg)
        cleaned: dict[str, Any] = {key: _value(key, value) for key, value in values.items()}
        return dataclasses.replace(base or DEFAULT_PARAMS, **cleaned)

    @classmethod
    def from_json(cls, text: str) -> Params:
        """Parse ``--params`` (a JSON object, e.g. ``{"max_depth": 4}``)."""
        try:
            values = json.loads(text)
        except ValueError as exc:
            msg = f"--params is not valid JSON ({exc}); e.g. --params '{{\"max_depth\": 4}}'"
            raise ConfigError(msg) from None
        if not isinstance(values, dict):
            msg = f"--params must be a JSON object, got {type(values).__name__}"
            raise ConfigError(msg)
        return cls.from_mapping(values)


_INTEGER = {"n_trees", "max_depth", "max_bin"}
_BOOLEAN = {"early_stopping"}
TREE_STEP = 25
"""Tree counts early stopping considers: multiples of this (and ``n_trees`` itself)."""
TREE_TOLERANCE = 0.005
"""Early stopping keeps the fewest trees whose mean validation AP is at least
(1 - this) x the best count's."""


def _value(key: str, value: Any) -> bool | int | float:
    if key in _BOOLEAN:
        if not isinstance(value, bool):
            msg = f"training parameter {key!r} must be true or false, got {value!r}"
            raise ConfigError(msg)
        return value
    return _number(key, value, key in _INTEGER)


def _number(key: str, value: Any, integer: bool) -> int | float:
    ok_int = isinstance(value, int) and not isinstance(value, bool)
    ok_float = ok_int or isinstance(value, float)
    if (integer and not ok_int) or not ok_float:
        kind = "a whole number" if integer else "a number"
        msg = f"training parameter {key!r} must be {kind}, got {value!r}"
        raise ConfigError(msg)
    return int(value) if integer else float(value)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        msg = f"training parameter {name!r} must be within [{low}, {high}], got {value!r}"
        raise ConfigError(msg)


DEFAULT_PARAMS = Params()
"""What ``fraudstream train`` uses without ``--params`` / ``--tune``."""


def sample_params(rng: np.random.Generator) -> Params:
    """One random draw from the search space of ``--tune``. ``n_trees`` is the most early
    stopping may keep; the class weight stays 1 so scores stay calibrated (heavier weights
    did not raise validation AP in the ablation, see ``models/README.md``)."""
    return Params(
        n_trees=int(rng.choice([100, 200, 300, 500])),
        max_depth=int(rng.choice([2, 3, 4, 5, 6, 8])),
        learning_rate=float(np.round(np.exp(rng.uniform(np.log(0.02), np.log(0.3))), 4)),
        subsample=float(np.round(rng.uniform(0.5, 1.0), 2)),
        colsample_bytree=float(np.round(rng.uniform(0.5, 1.0), 2)),
        min_child_weight=float(rng.choice([1.0, 3.0, 10.0])),
    )
