"""The ablation's variants: which features, which training parameters, which card ranking.

``before`` is the training this work started from (the handbook's 15 features, 100 trees
of depth 3, class weight 5, 256 histogram bins). The cumulative rows add one lever at a
time up to ``DEFAULT_PARAMS`` on feature set 2 (``defaults``), then feature set 4
(``features_4``: set 2, the customer's 30-day maximum amount and the terminal fraud ages;
what ``fraudstream train`` now trains on, ``CURRENT``); every other row changes one thing
against ``defaults``, so its paired difference over the seeds is that lever's worth.
Feature set 3 (set 4 and the amount z-score) is the ``store_best`` prototype row: the
z-score left the build with set 4, and the set 3 lever rows of ``models/README.md`` were
measured at commit 3ec2d65.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.models.params import DEFAULT_PARAMS, Params

HANDBOOK = FEATURE_NAMES[:15]
"""Feature set 1: the handbook's 15 features."""
SET_2 = FEATURE_NAMES[:18]
"""Feature set 2: those and the customer amount ratios."""
CURRENT = "features_4"
"""The row of the current defaults (the table's target and gain lines are about it)."""
MONOTONE_UP = ("tx_amount", "customer_amount_ratio_1d", "customer_amount_ratio_7d",
               "customer_amount_ratio_30d")  # fmt: skip
"""Features fraud can only grow with in the handbook's generator (amount > 220, amounts x 5)."""
RISKS = ("terminal_risk_1d", "terminal_risk_7d", "terminal_risk_30d")
PREVIOUS_TREES: dict[str, Any] = dict(
    n_trees=300, max_depth=3, learning_rate=0.0745, subsample=0.94, colsample_bytree=0.97,
    min_child_weight=3.0,
)  # fmt: skip
"""Tree parameters of the earlier default (``--tune 24`` on seed 0 with the 15 features)."""
BEFORE_PARAMS = Params(
    **{**PREVIOUS_TREES, "n_trees": 100}, scale_pos_weight=5.0, max_bin=256, early_stopping=False
)
"""``DEFAULT_PARAMS`` before this ablation."""
CANDIDATES: dict[str, dict[str, Any]] = {
    "tune_19": dict(n_trees=200, max_depth=4, learning_rate=0.0839, subsample=0.89,
                    colsample_bytree=0.71, min_child_weight=1.0),
    "tune_22": dict(n_trees=500, max_depth=6, learning_rate=0.0299, subsample=0.99,
                    colsample_bytree=0.94, min_child_weight=10.0),
    "tune_9": dict(n_trees=200, max_depth=4, learning_rate=0.2224, subsample=0.97,
                   colsample_bytree=0.68, min_child_weight=10.0),
}  # fmt: skip
"""Other candidates of ``fraudstream train --tune 30 --seed 0`` on the default dataset
(from 2018-07-25; 'tune N' is the log's N/30): the next best two by validation AP on seed
0 and the cheapest within 1 % of the best. The defaults are 'tune 23', the best by mean
validation AP over the folds of seeds 101-105."""


@dataclass(frozen=True)
class BoosterParams(Params):
    """``Params`` plus raw XGBoost settings, for levers ``Params`` does not offer."""

    booster_extra: tuple[tuple[str, Any], ...] = ()
    """XGBoost parameters added to (or replacing) ``booster_params``."""

    def booster_params(self, device: str, seed: int, nthread: int | None = None) -> dict[str, Any]:
        return {**super().booster_params(device, seed, nthread), **dict(self.booster_extra)}


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table."""

    name: str
    """Identifier (``--variants``)."""
    label: str
    """What the table says it is."""
    group: str
    """Section of the table: cumulative, lever, parameters, store prototype."""
    params: Params
    """Training parameters (the trainer's early stopping, thresholds... all apply)."""
    features: tuple[str, ...] = SET_2
    """Columns of the running feature vector the model sees."""
    prototypes: tuple[str, ...] = ()
    """Store prototype groups appended (``store_prototypes.PROTOTYPES``)."""
    card_ranking: str = "max"
    """Per card and day for card precision: ``max`` (the handbook's) or ``noisy_or``."""
    against: str | None = "defaults"
    """Variant the paired differences are taken against (None: none)."""

    @property
    def model_key(self) -> tuple[Any, ...]:
        """What the trained model depends on: variants sharing it share one model."""
        return (self.params, self.features, self.prototypes)


def _with(**changes: Any) -> Params:
    return dataclasses.replace(DEFAULT_PARAMS, **changes)


def _monotone(up: tuple[str, ...]) -> Params:
    spec = "(" + ",".join("1" if n in up else "0" for n in SET_2) + ")"
    fields = {f.name: getattr(DEFAULT_PARAMS, f.name) for f in dataclasses.fields(Params)}
    return BoosterParams(**fields, booster_extra=(("monotone_constraints", spec),))


def _store(name: str, label: str, *groups: str) -> Variant:
    return Variant(name, label, "store prototype", DEFAULT_PARAMS, prototypes=groups)


def _variants() -> list[Variant]:
    bins = dataclasses.replace(BEFORE_PARAMS, max_bin=DEFAULT_PARAMS.max_bin)
    calibrated = _with(**PREVIOUS_TREES)
    return [
        Variant("before", "before: handbook features, 100 trees, weight 5, 256 bins",
                "cumulative", BEFORE_PARAMS, HANDBOOK, against=None),
        Variant("bins", "+ 4096 histogram bins", "cumulative", bins, HANDBOOK, against="before"),
        Variant("ratios", "+ amount ratios (feature set 2)", "cumulative", bins, against="bins"),
        Variant("calibrated", "+ class weight 1, early stopping (at most 300 trees)",
                "cumulative", calibrated, against="ratios"),
        Variant("defaults", "+ tree parameters chosen on the folds (earlier defaults)",
                "cumulative", DEFAULT_PARAMS, against="calibrated"),
        Variant(CURRENT, "+ the customer's 30-day max amount, terminal fraud ages (set 4) "
                "= defaults", "cumulative", DEFAULT_PARAMS, FEATURE_NAMES, against="defaults"),
        Variant("set4_no_ages", "set 4 without the terminal fraud ages (set 2 + max)",
                "set 4 lever", DEFAULT_PARAMS, (*SET_2, "customer_max_amount_30d"),
                against=CURRENT),
        Variant("weight_5", "class weight 5", "lever", _with(scale_pos_weight=5.0)),
        Variant("fixed_trees", "no early stopping (all 200 trees)", "lever",
                _with(early_stopping=False)),
        Variant("no_outage", "store_outage_share 0", "lever", _with(store_outage_share=0.0)),
        Variant("monotone_amount", "monotone: amount, amount ratios", "lever",
                _monotone(MONOTONE_UP)),
        Variant("monotone_risk", "monotone: amount, ratios, terminal risks", "lever",
                _monotone(MONOTONE_UP + RISKS)),
        Variant("card_noisy_or", "cards ranked by noisy-or instead of max", "lever",
                DEFAULT_PARAMS, card_ranking="noisy_or"),
        *[Variant(name, f"{name}: depth {v['max_depth']}, lr {v['learning_rate']}, "
                  f"at most {v['n_trees']} trees", "parameters", _with(**v))
          for name, v in CANDIDATES.items()],
        _store("customer_gap", "+ seconds since the customer's previous transaction",
               "customer_gap"),
        _store("customer_amount_history", "+ amount z-score and max over the customer's 30 d",
               "customer_amount_history"),
        _store("customer_terminal", "+ customer's earlier transactions at this terminal",
               "customer_terminal"),
        _store("terminal_fraud_ages", "+ age of the first and last known terminal fraud",
               "terminal_fraud_ages"),
        _store("terminal_60d", "+ delayed 60-day terminal window", "terminal_60d"),
        _store("store_best", "+ amount history and terminal fraud ages",
               "customer_amount_history", "terminal_fraud_ages"),
        _store("store_all", "+ every store prototype", "customer_gap",
               "customer_amount_history", "customer_terminal", "terminal_fraud_ages",
               "terminal_60d"),
    ]  # fmt: skip


VARIANTS: dict[str, Variant] = {v.name: v for v in _variants()}
"""Every variant by name, in table order."""
