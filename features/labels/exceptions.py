"""Errors of the label worker (under the project's root, ``features.exceptions``).

FraudstreamError
└── LabelWorkerError
    ├── KafkaAuthenticationFailed   the brokers refused the SASL or TLS credentials
    └── KafkaUnreachable            no broker answered within the connect timeout
"""

from __future__ import annotations

from features.exceptions import FraudstreamError


class LabelWorkerError(FraudstreamError):
    """The label worker cannot start."""


class KafkaAuthenticationFailed(LabelWorkerError):
    """The brokers refused the credentials: a configuration error, not worth retrying."""


class KafkaUnreachable(LabelWorkerError):
    """No bootstrap server answered within the connect timeout."""
