"""The ablation's variants: which features, which training parameters, which card ranking.

``BEFORE`` is the training this work started from (the handbook's 15 features, 100 trees,
class weight 5, 256 histogram bins). The cumulative rows add one lever at a time up to
``DEFAULT_PARAMS`` on feature set 2; the other rows each change one thing against the
defaults, so their paired difference over the seeds is that lever's worth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from features.definitions import FEATURE_NAMES
from models.params import DEFAULT_PARAMS, Params

HANDBOOK = FEATURE_NAMES[:15]
"""Feature set 1: the handbook's 15 features."""
MONOTONE_UP = ("tx_amount", "customer_amount_ratio_1d", "customer_amount_ratio_7d",
               "customer_amount_ratio_30d")  # fmt: skip
"""Features fraud can only grow with in the handbook's generator (amount > 220, amounts x 5)."""
RISKS = ("terminal_risk_1d", "terminal_risk_7d", "terminal_risk_30d")


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
    """Section of the table: cumulative, lever, derived feature, store prototype."""
    params: Params
    """Training parameters (the trainer's early stopping, thresholds... all apply)."""
    features: tuple[str, ...] = FEATURE_NAMES
    """Columns of the running feature vector the model sees."""
    prototypes: tuple[str, ...] = ()
    """Store prototype groups appended (``store_prototypes.PROTOTYPES``)."""
    card_ranking: str = "max"
    """Per card and day for card precision: ``max`` (the handbook's) or ``noisy_or``."""
    against: str | None = "defaults"
    """Variant the paired differences are taken against (None: none)."""

    def monotone(self, names: tuple[str, ...], up: tuple[str, ...]) -> Variant:
        """This variant with monotone increasing constraints on ``up``."""
        spec = "(" + ",".join("1" if n in up else "0" for n in names) + ")"
        extra = (("monotone_constraints", spec),)
        return dataclasses.replace(
            self, params=BoosterParams(**_fields(self.params), booster_extra=extra)
        )


BEFORE_PARAMS = Params(n_trees=100, scale_pos_weight=5.0, max_bin=256, early_stopping=False)
"""``DEFAULT_PARAMS`` before this ablation."""
CANDIDATES = {
    "tune_19": dict(n_trees=200, max_depth=4, learning_rate=0.0839, subsample=0.89,
                    colsample_bytree=0.71, min_child_weight=1.0),
    "tune_22": dict(n_trees=500, max_depth=6, learning_rate=0.0299, subsample=0.99,
                    colsample_bytree=0.94, min_child_weight=10.0),
    "tune_23": dict(n_trees=200, max_depth=6, learning_rate=0.0734, subsample=0.62,
                    colsample_bytree=0.9, min_child_weight=1.0),
    "tune_9": dict(n_trees=200, max_depth=4, learning_rate=0.2224, subsample=0.97,
                   colsample_bytree=0.68, min_child_weight=10.0),
    "previous_tuning": dict(n_trees=300, max_depth=3, learning_rate=0.0745, subsample=0.94,
                            colsample_bytree=0.97, min_child_weight=3.0),
}  # fmt: skip
"""Parameter sets compared by mean validation AP over the seeds' folds: the best three and
the cheapest within 1 % of ``fraudstream train --tune 30 --seed 0`` on the default dataset
(seed 0, from 2018-07-25; 'tune N' is the log's N/30), and the earlier tuned set."""


def _fields(params: Params) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(Params)}


def _with(**changes: Any) -> Params:
    return dataclasses.replace(DEFAULT_PARAMS, **changes)


def _short(values: dict[str, Any]) -> str:
    return (f"depth {values['max_depth']}, lr {values['learning_rate']}, "
            f"at most {values['n_trees']} trees")  # fmt: skip


def _variants() -> list[Variant]:
    before = Variant("before", "before: handbook features, 100 trees, weight 5, 256 bins",
                     "cumulative", BEFORE_PARAMS, HANDBOOK, against=None)  # fmt: skip
    bins = dataclasses.replace(BEFORE_PARAMS, max_bin=DEFAULT_PARAMS.max_bin)
    default = Variant("defaults", "defaults (this table's reference)", "cumulative",
                      DEFAULT_PARAMS, against="before")  # fmt: skip
    store = Variant("store_all", "+ every store prototype", "store prototype", DEFAULT_PARAMS,
                    prototypes=("customer_gap", "customer_amount_history", "customer_terminal",
                                "terminal_fraud_ages", "terminal_60d"))  # fmt: skip
    return [
        before,
        Variant("bins", "+ 4096 histogram bins", "cumulative", bins, HANDBOOK, against="before"),
        Variant("ratios", "+ amount ratios (feature set 2)", "cumulative", bins, against="bins"),
        default,
        Variant("weight_5", "class weight 5 (uncalibrated)", "lever", _with(scale_pos_weight=5.0)),
        Variant("fixed_100", "100 trees, no early stopping", "lever",
                _with(n_trees=100, early_stopping=False)),  # fmt: skip
        Variant("no_outage", "store_outage_share 0", "lever", _with(store_outage_share=0.0)),
        Variant("depth_4", "depth 4", "lever", _with(max_depth=4)),
        dataclasses.replace(default, name="monotone_amount", label="monotone: amount, ratios",
                            group="lever", against="defaults").monotone(FEATURE_NAMES, MONOTONE_UP),
        dataclasses.replace(default, name="monotone_risk", group="lever", against="defaults",
                            label="monotone: amount, ratios, terminal risks")
        .monotone(FEATURE_NAMES, MONOTONE_UP + RISKS),  # fmt: skip
        dataclasses.replace(default, name="card_noisy_or", label="cards ranked by noisy-or",
                            group="lever", card_ranking="noisy_or", against="defaults"),
        Variant("customer_gap", "+ seconds since the customer's previous transaction",
                "store prototype", DEFAULT_PARAMS, prototypes=("customer_gap",)),
        Variant("customer_amount_history", "+ amount z-score and max over the customer's 30 d",
                "store prototype", DEFAULT_PARAMS, prototypes=("customer_amount_history",)),
        Variant("customer_terminal", "+ customer's earlier transactions at this terminal",
                "store prototype", DEFAULT_PARAMS, prototypes=("customer_terminal",)),
        Variant("terminal_fraud_ages", "+ age of the first and last known terminal fraud",
                "store prototype", DEFAULT_PARAMS, prototypes=("terminal_fraud_ages",)),
        Variant("terminal_60d", "+ delayed 60-day terminal window", "store prototype",
                DEFAULT_PARAMS, prototypes=("terminal_60d",)),
        store,
        *[Variant(name, f"parameters {name}: {_short(values)}", "parameters",
                  _with(**values)) for name, values in CANDIDATES.items()],
    ]  # fmt: skip


VARIANTS: dict[str, Variant] = {v.name: v for v in _variants()}
"""Every variant by name, in table order."""
