"""Errors of the label worker (under the project's root, ``fraudstream.features.exceptions``).

FraudstreamError
└── LabelWorkerError
    ├── KafkaAuthenticationFailed   the brokers refused the SASL or TLS credentials
    ├── KafkaUnreachable            no broker answered within the connect timeout
    ├── KafkaCodecMissing           a compression codec Kafka uses cannot be decoded here
    └── LabelWorkerCrashed          the running worker hit an error it cannot go on from
"""

from __future__ import annotations

from fraudstream.features.exceptions import FraudstreamError


class LabelWorkerError(FraudstreamError):
    """The label worker cannot start, or cannot go on."""


class KafkaAuthenticationFailed(LabelWorkerError):
    """The brokers refused the credentials: a configuration error, not worth retrying."""


class KafkaUnreachable(LabelWorkerError):
    """No bootstrap server answered within the connect timeout."""


class KafkaCodecMissing(LabelWorkerError):
    """aiokafka lacks a compression codec (its optional package ``cramjam``)."""


class LabelWorkerCrashed(LabelWorkerError):
    """A faust service or agent crashed; the worker stopped so that a supervisor restarts it
    and the uncommitted batch is read again."""
