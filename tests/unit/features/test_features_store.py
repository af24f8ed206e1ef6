"""The store contract's shared rules: fingerprints, watermark flags, caps."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.store import (
    AHEAD_TOLERANCE_S,
    FLAG_OUTLIER,
    check_caps,
    fingerprints,
    keeps,
    watermark_flags,
    watermarks,
)

T0 = 1_522_540_800_000


def _batch(*rows: tuple[str, str, str, int, float]) -> TransactionBatch:
    return TransactionBatch.from_columns(*(list(col) for col in zip(*rows, strict=True)))


def test_fingerprints_are_stable_across_versions() -> None:
    # stored with every transaction id: a change would make every redelivery after an
    # upgrade look like a conflict
    batch = _batch(("a", "c", "t", T0, 10.0), ("a", "c", "t", T0 + 1, 10.0))
    assert fingerprints(batch).hex() == "18d07a14517f7d8e90c5d79e738e9740"


@pytest.mark.parametrize(
    "other",
    [
        ("a", "c2", "t", T0, 10.0),
        ("a", "c", "t2", T0, 10.0),
        ("a", "c", "t", T0 + 1, 10.0),
        ("a", "c", "t", T0, 10.000001),
        ("a", "c1:t", "", T0, 10.0),  # lengths: no two contents share an encoding
    ],
)
def test_any_change_of_content_changes_the_fingerprint(
    other: tuple[str, str, str, int, float],
) -> None:
    first = ("a", "c", "t", T0, 10.0)
    prints = fingerprints(_batch(first, other, first, ("b", *first[1:])))
    assert len(prints) == 32
    assert prints[:8] != prints[8:16]
    assert prints[:8] == prints[16:24] == prints[24:]  # the id is not part of it


def test_rows_far_from_their_watermark_are_outliers() -> None:
    config = FeatureConfig()
    sec = T0 // 1000
    keep = keeps(config)[0]
    batch = _batch(*[(f"x{i}", "c", "t", T0, 1.0) for i in range(6)])
    wm = watermarks(
        batch,
        [
            sec,
            sec - AHEAD_TOLERANCE_S,
            sec - AHEAD_TOLERANCE_S - 1,
            sec + keep - 1,
            sec + keep,
            np.nan,
        ],
    )
    assert watermark_flags(batch, wm, config).tolist() == [0, 0, FLAG_OUTLIER, 0, FLAG_OUTLIER, 0]
    assert np.isnan(watermarks(batch, None)).all()


def test_a_watermark_per_row_or_none() -> None:
    with pytest.raises(ValueError, match="watermark_s has 2 values for a batch of 1 rows"):
        watermarks(_batch(("a", "c", "t", T0, 1.0)), [1, 2])


@pytest.mark.parametrize("cap", [31, 0, -5, 1.5, True])
def test_caps_too_small_to_trim_in_steps_are_config_errors(cap: object) -> None:
    with pytest.raises(ConfigError, match="max_customer_records must be a whole number >= 32"):
        check_caps(cap, 64)  # type: ignore[arg-type]
    check_caps(32, 32)
