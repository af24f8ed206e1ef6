"""The worker's web views (faust web, on ``--web-port``): ``/kpis`` (JSON), ``/healthz`` and
``/metrics`` (Prometheus text format), and ``/consumer``: the consumer's state per partition
(JSON), for chasing a stall, with the decision forwarder's positions under ``decisions``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from fraudstream.features.labels.consumer_state import consumer_state
from fraudstream.features.labels.forwarder import DecisionForwarder
from fraudstream.features.labels.kpi_table import KpiTable
from fraudstream.features.labels.metrics import LabelMetrics


def add_views(
    app: Any, kpis: KpiTable, metrics: LabelMetrics, forwarder: DecisionForwarder | None = None
) -> None:
    """Register the views on ``app``."""

    async def kpis_view(view: Any, request: Any) -> Any:
        last = _last_hours(request.query.get("last"))
        if isinstance(last, str):
            return view.json({"error": last}, status=400)
        hours = kpis.hours(last)
        return view.json({"hours": [h.to_json() for h in hours], "ignored_records": kpis.ignored})

    async def health_view(view: Any, request: Any) -> Any:
        return view.json({"status": "ok"})

    async def metrics_view(view: Any, request: Any) -> Any:
        # aiohttp refuses a charset in ``content_type=``, so the whole value goes in a header
        return view.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def consumer_view(view: Any, request: Any) -> Any:
        state = consumer_state(app)
        if forwarder is not None:  # the decisions: read by a consumer of its own
            state["decisions"] = forwarder.progress()
        return view.json(state)

    app.page("/kpis", name="kpis")(kpis_view)
    app.page("/healthz", name="healthz")(health_view)
    app.page("/metrics", name="metrics")(metrics_view)
    app.page("/consumer", name="consumer")(consumer_view)


def _last_hours(text: str | None) -> int | None | str:
    """The ``last`` query parameter: a count of hours, or an error message."""
    if text is None:
        return None
    if not text.isdigit():
        return f"last must be a whole number of hours, got {text[:32]!r}"
    return int(text)
