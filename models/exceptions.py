"""Errors raised by ``models``: training, the registry and the scorer.

FraudstreamError                    (fraudstream.features.exceptions)
├── ConfigError
│   └── DeviceUnavailable           cuda was asked for but no GPU (or no CuPy) is usable
└── ModelError
    ├── ModelNotFound               no such version, or no CURRENT model to load
    ├── ModelCorrupt                checksum, format or manifest is wrong (incl. pickles)
    ├── ModelSchemaMismatch         the model was trained on other feature definitions
    ├── RegistryError               a registry operation cannot be done (e.g. no rollback)
    └── TrainingError               the data cannot train or evaluate a model
"""

from __future__ import annotations

from fraudstream.features.exceptions import ConfigError, FraudstreamError


class ModelError(FraudstreamError):
    """Root of the errors about models and the model registry."""


class ModelNotFound(ModelError):
    """The requested model version (or the CURRENT pointer) does not exist."""


class ModelCorrupt(ModelError):
    """A model file or manifest fails its checksum, format or field validation."""


class ModelSchemaMismatch(ModelError):
    """The model's feature names or schema hash differ from the running feature definitions."""


class RegistryError(ModelError):
    """A registry operation cannot be carried out (e.g. nothing to roll back to)."""


class TrainingError(ModelError):
    """The data given cannot train or evaluate a model (empty window, one class only...)."""


class DeviceUnavailable(ConfigError):
    """The requested device cannot be used (``cuda`` without a visible GPU, or without CuPy)."""
