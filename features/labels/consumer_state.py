"""What the worker's consumer is doing, partition by partition, for operators chasing a stall:
the ``/consumer`` view.

faust keeps this in private attributes (its fetch set, paused and back-pressured partitions,
read and committed offsets) and so does aiokafka (positions, prefetched records); none of it
is public API. Every field is read defensively: one that a faust or aiokafka release renamed
comes back as ``null`` instead of breaking the view.
"""

from __future__ import annotations

from typing import Any


def consumer_state(app: Any) -> dict[str, Any]:
    """A JSON-ready snapshot of ``app``'s consumer (a faust app)."""
    consumer = app.consumer
    active = _tp_set(consumer, "_active_partitions")
    paused = _tp_set(consumer, "_paused_partitions")
    buffered = _tp_set(consumer, "_buffered_partitions")
    read = getattr(consumer, "_read_offset", {})
    committed = getattr(consumer, "_committed_offset", {})
    kafka = _aiokafka_consumer(consumer)
    prefetched = _prefetched(kafka)
    partitions = []
    for tp in sorted(_assignment(consumer), key=lambda t: (t.topic, t.partition)):
        key = (tp.topic, tp.partition)
        state = _kafka_state(kafka, tp)
        partitions.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "fetching": None if active is None else key in active,
                "paused": None if paused is None else key in paused,
                "back_pressure": None if buffered is None else key in buffered,
                "read_offset": _get(read, tp),
                "committed_offset": _get(committed, tp),
                "position": state.get("position"),
                "highwater": state.get("highwater"),
                "kafka_paused": state.get("paused"),
                "prefetched": None if prefetched is None else key in prefetched,
            }
        )
    return {
        "flow_active": getattr(consumer, "flow_active", None),
        "in_recovery": getattr(app, "in_recovery", None),
        "rebalancing": getattr(app, "rebalancing", None),
        "stream_queues": _queues(app),
        "partitions": partitions,
    }


def _assignment(consumer: Any) -> set[Any]:
    try:
        return set(consumer.assignment())
    except Exception:  # noqa: BLE001 - a snapshot must not fail on a stopping consumer
        return set()


def _tp_set(obj: Any, name: str) -> set[tuple[str, int]] | None:
    found = getattr(obj, name, None)
    if found is None:
        return None
    return {(tp.topic, tp.partition) for tp in found}


def _get(offsets: Any, tp: Any) -> int | None:
    try:
        value = offsets.get(tp)
    except Exception:  # noqa: BLE001
        return None
    return None if value is None else int(value)


def _aiokafka_consumer(consumer: Any) -> Any:
    thread = getattr(consumer, "_thread", None)
    return getattr(thread, "_consumer", None)


def _kafka_state(kafka: Any, tp: Any) -> dict[str, Any]:
    try:  # faust's TP and aiokafka's TopicPartition are equal (topic, partition) tuples
        assignment = kafka._subscription.subscription.assignment
        state = assignment.state_value(tp)
    except Exception:  # noqa: BLE001
        return {}
    if state is None:
        return {}
    return {
        "position": state.position if state.has_valid_position else None,
        "highwater": state.highwater,
        "paused": state.paused,
    }


def _prefetched(kafka: Any) -> set[tuple[str, int]] | None:
    try:
        return {(tp.topic, tp.partition) for tp in kafka._fetcher._records}
    except Exception:  # noqa: BLE001
        return None


def _queues(app: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        agents = list(app.agents.values())
    except Exception:  # noqa: BLE001
        return out
    for agent in agents:
        size = _qsize(agent)
        if size is not None:
            out[str(agent.name)] = size
    return out


def _qsize(agent: Any) -> int | None:
    try:
        return int(agent.channel.queue.qsize())
    except Exception:  # noqa: BLE001
        return None
