"""Errors of the streaming layer; all derive from
``fraudstream.features.exceptions.FraudstreamError``.

FraudstreamError
├── ConfigError                 (fraudstream.features.exceptions)
└── StreamError
    ├── BrokerUnavailable       no broker answered within the configured timeout
    ├── AuthenticationFailed    the broker refused our credentials
    └── FatalKafkaError         the producer was fenced or hit a fatal error: exit non-zero
"""

from __future__ import annotations

from fraudstream.features.exceptions import FraudstreamError


class StreamError(FraudstreamError):
    """Root of the streaming layer's errors."""


class BrokerUnavailable(StreamError):
    """No Kafka broker answered at the configured address within the timeout."""


class AuthenticationFailed(StreamError):
    """The broker rejected the configured credentials (SASL / SSL)."""


class FatalKafkaError(StreamError):
    """A fatal client error (e.g. a fenced transactional producer); the process must exit."""
