"""The assembled faust app (built, not started) and the metrics it exposes."""

from __future__ import annotations

from collections.abc import Sequence

from fraudstream.features.labels.app import build_app
from fraudstream.features.labels.forwarder import group_of
from fraudstream.features.labels.join import DECIDED, FRAUDS, WIDTH
from fraudstream.features.labels.kpis import summarize
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.settings import LabelSettings
from fraudstream.features.schema import Label

H0 = 1_522_540_800


class NullStore:
    def apply_labels(self, labels: Sequence[Label]) -> int:
        return 0


def _settings(**extra: object) -> LabelSettings:
    return LabelSettings(bootstrap_servers="k:1", redis_url="redis://r", **extra)  # type: ignore[arg-type]


def test_app_wiring() -> None:
    settings = _settings(group_id="g1", kpi_partitions=3, web_port=7123)
    built = build_app(settings, NullStore())
    app = built.app
    assert app.conf.id == "g1" and app.conf.web_port == 7123
    assert app.conf.store.scheme == "memory"
    topics = {t for agent in app.agents.values() for t in agent.channel.topics}
    assert topics == {"fraud.labels", "g1-kpi-join"}  # decisions: the forwarder's thread
    assert group_of(settings) == "g1-decisions"  # the forwarder's group, as OPERATIONS.md names it
    table = app.tables["kpi"]
    assert table.partitions == 3 and table.changelog_topic.get_topic_name() == "g1-kpi-changelog"
    assert table.window.current(7200.5) == (7200.0, 10799.9)
    assert table.window.expires is None and not table._should_expire_keys()
    assert built.kpis.hours() == []


def test_metric_names_and_kpi_gauges() -> None:
    stats = [0.0] * WIDTH
    stats[DECIDED + 2] = 4
    stats[FRAUDS + 2] = 1
    metrics = LabelMetrics(lambda: summarize([(H0, stats)]))
    metrics.applied.inc(3)
    metrics.dead_letters.labels(code="not_json").inc()
    text = metrics.render().decode()
    assert "fraudstream_labels_applied_total 3.0" in text
    assert 'fraudstream_labels_dead_letters_total{code="not_json"} 1.0' in text
    hour = 'hour="2018-04-01T00:00:00Z"'
    assert f'fraudstream_kpi_decisions{{decision="decline",{hour}}} 4.0' in text
    assert f'fraudstream_kpi_precision{{decision="decline",{hour}}} 0.25' in text
    assert 'decision="review",' + hour + "} " not in text.split("fraudstream_kpi_precision")[-1]
    assert f"fraudstream_kpi_confirmed_frauds{{{hour}}} 1.0" in text
    assert f'fraudstream_kpi_fraud_amount{{{hour},outcome="caught"}} 0.0' in text


def test_last_hours_parameter() -> None:
    from fraudstream.features.labels.web import _last_hours

    assert _last_hours(None) is None and _last_hours("24") == 24
    assert _last_hours("-1") == "last must be a whole number of hours, got '-1'"
