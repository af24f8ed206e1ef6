"""The ablation harness (ops/models): store prototypes are point-in-time, and the table's
statistics pair seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.models import metrics
from tests.infra import ROOT

sys.path.insert(0, str(ROOT / "ops" / "models"))
import ablation_table  # noqa: E402
import evaluate_seeds  # noqa: E402
import store_prototypes  # noqa: E402
import variants  # noqa: E402

DAY_MS = 86_400_000
T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def _frame(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ms = np.sort(T0 + rng.integers(0, 60 * 4, n) * (DAY_MS // 4))  # equal times occur
    return pd.DataFrame(
        {
            "transaction_id": [str(i) for i in range(n)],
            "event_time_ms": ms.astype(np.int64),
            "customer_id": [f"c{i}" for i in rng.integers(0, 4, n)],
            "terminal_id": [f"t{i}" for i in rng.integers(0, 3, n)],
            "amount": rng.integers(0, 10_000, n) / 100,
            "is_fraud": (rng.random(n) < 0.2).astype(np.int8),
        }
    )


def _oracle(df: pd.DataFrame, i: int) -> dict[str, float]:
    """Row ``i``'s prototypes straight from their definitions."""
    sec = df["event_time_ms"].to_numpy() // 1000
    cust, term = df["customer_id"].to_numpy(), df["terminal_id"].to_numpy()
    amount, fraud = df["amount"].to_numpy(), df["is_fraud"].to_numpy()
    earlier = [j for j in range(i) if cust[j] == cust[i]]  # table order = time order here
    window = [j for j in earlier if sec[i] - 30 * 86_400 < sec[j]]
    values = amount[window]
    mean, var = (values.mean(), values.var()) if window else (np.nan, np.nan)
    hi = sec[i] - 7 * 86_400
    seen = [j for j in range(len(df)) if term[j] == term[i] and hi - 30 * 86_400 < sec[j] <= hi]
    frauds = [sec[j] for j in seen if fraud[j]]
    return {
        "customer_seconds_since_previous": sec[i] - sec[earlier[-1]] if earlier else np.nan,
        "customer_amount_z_30d": (amount[i] - mean) / np.sqrt(var + 1)
        if len(window) > 1
        else np.nan,
        "customer_max_amount_30d": values.max() if window else np.nan,
        "customer_terminal_nb_tx_30d": sum(term[j] == term[i] for j in window),
        "terminal_first_fraud_age_s": hi - min(frauds) if frauds else np.nan,
        "terminal_last_fraud_age_s": hi - max(frauds) if frauds else np.nan,
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_store_prototypes_match_their_point_in_time_definitions(seed: int) -> None:
    df = _frame(seed)
    got: dict[str, np.ndarray] = {}
    for group in ("customer_gap", "customer_amount_history", "customer_terminal",
                  "terminal_fraud_ages"):  # fmt: skip
        got.update(store_prototypes.PROTOTYPES[group](df))
    want = pd.DataFrame([_oracle(df, i) for i in range(len(df))])
    assert set(got) == set(want.columns)
    for name in want.columns:
        np.testing.assert_allclose(got[name], want[name].to_numpy(float), rtol=1e-9, err_msg=name)


def test_a_later_transaction_never_changes_an_earlier_prototype() -> None:
    df = _frame(2)
    cut = df.iloc[:200]
    for function in store_prototypes.PROTOTYPES.values():
        whole, head = function(df), function(cut)
        for name, values in head.items():
            np.testing.assert_allclose(whole[name][:200], values, rtol=1e-9, err_msg=name)


def test_summaries_pair_the_seeds_and_say_whether_the_targets_are_met() -> None:
    names = ("calibrated", "defaults")
    runs = {
        "calibrated": [{"roc_auc": 0.8, "average_precision": 0.6, "card_precision_at_100": 0.3,
                    "validation_average_precision": 0.5, "trees": 100.0}] * 2,
        "defaults": [
            {"roc_auc": 0.9, "average_precision": 0.7, "card_precision_at_100": 0.31,
             "validation_average_precision": 0.6, "trees": 100.0},
            {"roc_auc": 0.88, "average_precision": 0.72, "card_precision_at_100": 0.29,
             "validation_average_precision": 0.62, "trees": 150.0},
        ],
    }  # fmt: skip
    chosen = {n: variants.VARIANTS[n] for n in names}
    summary = ablation_table.summarize(runs, chosen)
    diff = summary["defaults"]["paired_difference"]["average_precision"]
    assert diff["mean"] == pytest.approx(0.11)
    assert diff["std"] == pytest.approx(np.std([0.1, 0.12], ddof=1))
    assert "paired_difference" not in summary["calibrated"]  # its reference did not run
    table = ablation_table.markdown(summary, chosen, [1, 2])
    row = "| 0.890 ± 0.014 | 0.710 ± 0.014 | 0.300 ± 0.014 | +0.110 ± 0.014 | calibrated | "
    row += "0.610 ± 0.014 | 125 |  |  |"
    assert row in table
    assert table.endswith("card_precision_at_100 0.300 >= 0.30: met.\n")


def test_readme_section_is_replaced_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation_table.BEGIN}\nold\n{ablation_table.END}\noutro\n")
    ablation_table.update_readme(readme, "| new |\n")
    assert readme.read_text() == (
        f"intro\n{ablation_table.BEGIN}\n| new |\n{ablation_table.END}\noutro\n"
    )


def test_auc_loss_by_fraud_kind_adds_up_to_one_minus_auc() -> None:
    rng = np.random.default_rng(4)
    n = 400
    scenario = rng.choice([0, 0, 0, 1, 2, 3], n)
    df = pd.DataFrame({"fraud_scenario": scenario})
    risks = {f"terminal_risk_{w}d": rng.choice([0.0, 0.5], n) for w in (1, 7, 30)}
    world = evaluate_seeds.World(0, df, risks, {})
    scores = np.round(rng.random(n) + 0.3 * (scenario > 0), 1)  # ties on purpose
    loss = evaluate_seeds.auc_loss_by_fraud_kind(world, np.arange(n), scores)
    kinds = ("amount", "terminal_visible", "terminal_unseen", "card")
    total = sum(loss[f"auc_loss_{k}"] for k in kinds)
    assert total == pytest.approx(1 - metrics.roc_auc(scenario > 0, scores), rel=1e-12)
    assert sum(loss[f"fraud_share_{k}"] for k in kinds) == pytest.approx(1.0)
    unseen = (scenario == 2) & (np.max(list(risks.values()), axis=0) == 0)
    assert loss["fraud_share_terminal_unseen"] == unseen.sum() / (scenario > 0).sum()


def test_each_finished_seed_is_written_and_makes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    args = evaluate_seeds._parser().parse_args(
        ["--seeds", "101", "102", "--variants", "defaults", "--json", str(out)]
    )
    row = {"roc_auc": 0.9, "average_precision": 0.7, "card_precision_at_100": 0.3,
           "validation_average_precision": 0.6, "trees": 50.0,
           "calibration_ratio": float("nan")}  # fmt: skip
    evaluate_seeds._checkpoint(args, 101, {"defaults": [row]})
    saved = json.loads(out.read_text())
    assert (saved["seeds"], saved["partial"]) == ([101], True)
    assert saved["runs"]["defaults"][0]["calibration_ratio"] is None  # NaN -> null
    evaluate_seeds._checkpoint(args, 102, {"defaults": [row, row]})
    assert json.loads(out.read_text())["partial"] is False
    readme = tmp_path / "README.md"
    readme.write_text(f"{ablation_table.BEGIN}\n{ablation_table.END}\n")
    evaluate_seeds.main(["--from-json", str(out), "--readme", str(readme)])
    assert "| 0.900 ± 0.000 | 0.700 ± 0.000 | 0.300 ± 0.000 |" in readme.read_text()


def test_tables_merge_json_files_in_table_order_and_the_current_row_is_judged(
    tmp_path: Path,
) -> None:
    def row(auc: float) -> dict[str, float]:
        return {"roc_auc": auc, "average_precision": 0.7, "card_precision_at_100": 0.3,
                "validation_average_precision": 0.6, "trees": 50.0}  # fmt: skip

    earlier, later = tmp_path / "full.json", tmp_path / "set3.json"
    earlier.write_text(
        json.dumps(
            {
                "seeds": [1, 2],
                "runs": {
                    "store_best": [row(0.5)] * 2,
                    "defaults": [row(0.1)] * 2,
                    "before": [row(0.2)] * 2,
                },
            }
        )
    )
    later.write_text(json.dumps({"seeds": [1, 2], "runs": {
        variants.CURRENT: [row(0.9)] * 2, "defaults": [row(0.3)] * 2}}))  # fmt: skip
    seeds, runs = evaluate_seeds.merge_runs([json.loads(p.read_text()) for p in (earlier, later)])
    assert seeds == [1, 2]
    assert list(runs) == ["before", "defaults", variants.CURRENT, "store_best"]
    assert runs["defaults"][0]["roc_auc"] == 0.3  # the later file's
    readme = tmp_path / "README.md"
    readme.write_text(f"{ablation_table.BEGIN}\n{ablation_table.END}\n")
    evaluate_seeds.main(["--from-json", str(earlier), str(later), "--readme", str(readme)])
    text = readme.read_text()
    assert text.count("| 0.500 ± 0.000 |") == 1  # the earlier file's rows stay
    assert "roc_auc 0.900 >= 0.88" in text  # the targets are the current defaults'
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"seeds": [3], "runs": {"defaults": [row(0.1)]}}))
    with pytest.raises(SystemExit, match="cover seeds"):
        evaluate_seeds.merge_runs([json.loads(p.read_text()) for p in (earlier, other)])
