"""Fixtures of the label pipeline's integration tests: its topics and a worker factory
(every worker is stopped at the end of its test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from fraudstream.features.redis_store import RedisStore
from tests.integration.labels.harness import LabelTopics, Worker, worker_env


@pytest.fixture
def label_topics(topic_factory: Callable[..., str]) -> LabelTopics:
    return LabelTopics(
        labels=topic_factory("labels", partitions=2),
        dlq=topic_factory("labels-dlq", partitions=1),
        decisions=topic_factory("decisions", partitions=2),
    )


@pytest.fixture
def start_worker(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    group_id: str,
    label_topics: LabelTopics,
    tmp_path: Path,
) -> Iterator[Callable[..., Worker]]:
    """``start_worker(**settings)``: a running worker on this test's topics, group and prefix;
    ``settings`` become FRAUDSTREAM_* variables (e.g. kpi_partitions=2), ``env`` is added
    as is, ``module`` runs ``python -m module`` instead of the CLI, ``workdir`` (with a
    ``data_dir``) keeps a second worker's logs and state apart."""
    workers: list[Worker] = []

    def start(
        redis: str | None = None,
        via_cli: bool = True,
        module: str | None = None,
        env: dict[str, str] | None = None,
        workdir: Path | None = None,
        **settings: object,
    ) -> Worker:
        args = [
            *("--bootstrap-servers", kafka_bootstrap, "--redis-url", redis or redis_url),
            *("--redis-prefix", redis_prefix, "--group-id", group_id),
            *("--labels-topic", label_topics.labels, "--labels-dlq-topic", label_topics.dlq),
            *("--decisions-topic", label_topics.decisions),
        ]
        defaults: dict[str, object] = {
            "kpi_partitions": 2,
            "session_timeout_s": 6,  # a killed worker's partitions come back quickly
            "data_dir": tmp_path / "faust",
        }
        variables = worker_env(**(defaults | settings)) | (env or {})
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        worker = Worker(args, variables, workdir or tmp_path, via_cli, module)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
    _drop_internal_topics(kafka_bootstrap, group_id)
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    store.drop()
    store.close()


def _drop_internal_topics(bootstrap: str, group_id: str) -> None:
    """faust's topics of this test's app (join, changelog, assignor): named after the group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{group_id}-")]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result(timeout=60)
