"""The Grafana dashboard: every query names exposed metrics, used the way their type allows."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.unit.deploy.contract import METRICS
from tests.unit.deploy.manifests import DASHBOARD, GRAFANA

_METRIC = re.compile(r"\bfraudstream_[a-z0-9_]+\b")
_FUNC = re.compile(r"([a-z_]*)\s*$")


def _dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def _base(name: str) -> tuple[str, str]:
    """The exposed metric a series name belongs to, and the series suffix used."""
    if name in METRICS:
        return name, ""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base) == "histogram":
            return base, suffix
    raise AssertionError(f"{name} is not a metric fraudstream exposes")


def _enclosing_function(expr: str, pos: int) -> str:
    """The name of the function call whose parentheses enclose position ``pos``."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(":
            if depth == 0:
                match = _FUNC.search(expr[:i])
                return match.group(1) if match else ""
            depth -= 1
    return ""


def test_every_panel_queries_fraudstream_metrics_by_their_exposed_names() -> None:
    panels = _panels()
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _METRIC.findall(target["expr"])
            assert names, f"{panel['title']}: {target['expr']}"
            for name in names:
                _base(name)


def test_counters_and_buckets_are_only_read_as_rates() -> None:
    for expr in _exprs():
        for match in _METRIC.finditer(expr):
            base, suffix = _base(match.group())
            if METRICS[base] == "counter" or suffix:
                func = _enclosing_function(expr, match.start())
                assert func in ("rate", "irate", "increase"), f"{match.group()} in {expr}"
            if suffix == "_bucket":
                assert expr.startswith("histogram_quantile("), expr
                assert re.search(r"sum by \(le\b[^)]*\)", expr), expr
            if METRICS[base] == "histogram":
                assert suffix, f"{base} has no series of its own: {expr}"


def test_the_panels_the_issue_asks_for_are_there() -> None:
    exprs = _exprs()

    def some(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    for q in ("0.5", "0.95", "0.99"):
        assert some(
            rf"histogram_quantile\({q}, sum by \(le\) \(rate\("
            r"fraudstream_e2e_latency_seconds_bucket"
        )
    assert some(r"^sum\(rate\(fraudstream_decisions_total")  # throughput
    assert some(r"sum by \(decision\) \(rate\(fraudstream_decisions_total")
    assert some(r"sum by \(rung\) \(rate\(fraudstream_degraded_total")
    assert some(r"fraudstream_dead_letters_total")
    assert some(r"by \(partition\) \(fraudstream_consumer_lag\)")
    assert some(r"fraudstream_deadline_missed_total")
    assert some(r"by \([^)]*version[^)]*device[^)]*\) \(fraudstream_model_info\)")


def test_panels_use_the_provisioned_datasource_and_fit_the_grid() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    uid = provisioned[0]["uid"]
    dashboard = _dashboard()
    assert dashboard["uid"] == "fraudstream"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
