"""The project's exception tree; every error fraudstream raises on purpose is one of these.

    FraudstreamError
    ├── ConfigError                 a flag, variable or file value is wrong
    ├── InvalidInput                a message or a file row is not what the contract says
    │   ├── InvalidTransaction      (carries a stable ``code`` and the ``field``)
    │   └── InvalidLabel
    ├── DataFileError               a data file is missing, unreadable or lacks a column
    ├── FeatureStoreUnavailable     the online store refused, failed or is unreachable
    │   └── FeatureStoreTimeout     it did not answer within the call's bound (maybe slow)
    └── ModelError                  (defined in fraudstream.models.exceptions)
        ├── ModelNotFound
        ├── ModelCorrupt
        └── ModelSchemaMismatch

The root lives here because ``features`` is the bottom of the dependency graph:
``models`` and ``stream`` import it, never the other way round.
"""

from __future__ import annotations


class FraudstreamError(Exception):
    """Root of every error fraudstream raises on purpose."""


class ConfigError(FraudstreamError):
    """A configuration value (flag, environment variable, TOML key) is invalid."""


class InvalidInput(FraudstreamError):
    """Input data does not satisfy its contract.

    ``code`` is stable and machine-readable (it goes into dead-letter headers);
    ``field`` names the offending field, or is empty when the whole payload is at fault.
    """

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.reason = message


class InvalidTransaction(InvalidInput):
    """A transaction payload failed decoding or validation."""


class InvalidLabel(InvalidInput):
    """A fraud-label payload failed decoding or validation."""


class DataFileError(FraudstreamError):
    """A data file (Parquet, CSV, JSON Lines) is missing, unreadable or lacks a column."""


class FeatureStoreUnavailable(FraudstreamError):
    """The online feature store failed or timed out; callers degrade to partial features."""


class FeatureStoreTimeout(FeatureStoreUnavailable):
    """The store did not answer within the call's bound: slow, not necessarily down (the
    connection was dropped, so a late reply is never read as another call's)."""
