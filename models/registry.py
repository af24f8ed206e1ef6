"""The model registry: versioned directories of a UBJSON model plus its manifest.

Layout under the root::

    v0001/model.ubj       XGBoost UBJSON (never pickle: nothing that executes code on load)
    v0001/manifest.json   fraudstream.models.manifest.Manifest as JSON
    CURRENT               the promoted version, one line
    HISTORY               JSON lines, one per promote / rollback (the rollback stack)
    .lock                 serialises promote / rollback / amend between processes

Versions are ``v`` plus a zero-padded sequence number (``v0001``...) and sort by that
number. A version directory appears whole or not at all: it is written under a hidden temp
name and renamed into place; ``CURRENT``, ``HISTORY`` and amended manifests are replaced
with ``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import xgboost as xgb

from fraudstream.models.exceptions import ModelCorrupt, ModelNotFound, RegistryError
from fraudstream.models.manifest import Manifest, Thresholds, TrainWindow

logger = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"
MANIFEST_FILE = "manifest.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_UBJ_OBJECT = b"{"
_PICKLE_MAGIC = b"\x80"


class Registry:
    """A model registry rooted at a directory; safe to share between processes."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION_RE.match(p.name)]
        found = [v for v in found if (self.root / v / MANIFEST_FILE).is_file()]
        return sorted(found, key=_version_number)

    def model_path(self, version: str) -> Path:
        """Path of ``model.ubj`` for ``version`` (whether or not it exists)."""
        return self._version_dir(version) / MODEL_FILE

    def manifest(self, version: str) -> Manifest:
        """The validated manifest of ``version``; ``ModelNotFound`` / ``ModelCorrupt``."""
        path = self._version_dir(version) / MANIFEST_FILE
        if not path.is_file():
            self._not_found(version)
        manifest = Manifest.from_json(path.read_bytes(), source=str(path))
        if manifest.version != version:
            msg = f"{path}: field 'version' says {manifest.version!r} but the directory is "
            msg += f"{version!r}; restore the file or re-register the model"
            raise ModelCorrupt(msg)
        return manifest

    def read_model(self, version: str) -> tuple[Manifest, bytes]:
        """Manifest and model bytes, checked against the manifest's sha256 and format."""
        manifest = self.manifest(version)
        path = self.model_path(version)
        if not path.is_file():
            msg = f"{path} is missing although its manifest exists; re-register {version}"
            raise ModelCorrupt(msg)
        raw = path.read_bytes()
        _check_model_bytes(raw, manifest, path)
        return manifest, raw

    def current(self) -> str | None:
        """The promoted version named by ``CURRENT``, or None when nothing was promoted."""
        path = self.root / "CURRENT"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not _VERSION_RE.match(text):
            msg = f"{path} holds {text[:40]!r}, not a version; run fraudstream models promote"
            raise ModelCorrupt(msg)
        return text

    def history(self) -> list[str]:
        """The rollback stack: promoted versions, the current one last."""
        stack: list[str] = []
        for event in self._events():
            if event["action"] == "promote":
                stack.append(event["version"])
            elif stack:
                stack.pop()
        return stack

    def promote(self, version: str) -> None:
        """Make ``version`` current after checking its manifest and checksum."""
        self.read_model(version)
        with self._locked():
            self._append_event("promote", version)
            _atomic_write(self.root / "CURRENT", f"{version}\n".encode())
        logger.info("registry %s: promoted %s", self.root, version)

    def rollback(self) -> str:
        """Make the previously promoted version current again and return it."""
        with self._locked():
            stack = self.history()
            if len(stack) < 2:
                msg = f"registry {self.root} has no earlier promotion to roll back to"
                raise RegistryError(msg)
            if stack[-1] != self.current():
                msg = f"CURRENT ({self.current()}) is not the last promotion ({stack[-1]}) in "
                msg += f"{self.root / 'HISTORY'}; promote the wanted version explicitly"
                raise RegistryError(msg)
            previous = stack[-2]
            self._append_event("rollback", stack[-1])
            _atomic_write(self.root / "CURRENT", f"{previous}\n".encode())
        logger.info("registry %s: rolled back %s -> %s", self.root, stack[-1], previous)
        return previous

    def register(
        self,
        booster: xgb.Booster,
        *,
        feature_names: tuple[str, ...] | list[str],
        schema_hash: str,
        params: Mapping[str, Any],
        train_window: TrainWindow,
        data_fingerprint: str,
        metrics: Mapping[str, float | None],
        thresholds: Thresholds,
        device: str,
        truncation_trees: int | None = None,
        provenance: Mapping[str, Any] | None = None,
        partial_thresholds: Thresholds | None = None,
        truncated_thresholds: Thresholds | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> str:
        """Store ``booster`` as a new version (UBJSON + manifest) and return the version."""
        raw = bytes(booster.save_raw(raw_format="ubj"))
        fields = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "feature_names": tuple(feature_names),
            "schema_hash": schema_hash,
            "params": dict(params),
            "train_window": train_window,
            "data_fingerprint": data_fingerprint,
            "metrics": dict(metrics),
            "thresholds": thresholds,
            "num_trees": booster.num_boosted_rounds(),
            "xgboost_version": xgb.__version__,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "device": device,
            "truncation_trees": truncation_trees,
            "partial_thresholds": partial_thresholds,
            "truncated_thresholds": truncated_thresholds,
            "features": dict(features or {}),
            "provenance": dict(provenance or {}),
        }
        return self._store(raw, fields)

    def amend(self, version: str, **changes: Any) -> Manifest:
        """Replace manifest fields (e.g. ``truncation_trees``) atomically; returns the new one.

        The identity fields (version, sha256, num_trees, feature_names, schema_hash) cannot
        change: a different model is a new version.
        """
        frozen = {"version", "sha256", "num_trees", "feature_names", "schema_hash", "features"}
        if frozen & changes.keys():
            msg = f"cannot amend {sorted(frozen & changes.keys())}; register a new version"
            raise RegistryError(msg)
        with self._locked():
            updated = dataclasses.replace(self.manifest(version), **changes)
            checked = Manifest.from_json(updated.to_json(), source=f"amended {version}")
            path = self._version_dir(version) / MANIFEST_FILE
            _atomic_write(path, checked.to_json().encode())
        return checked

    def _store(self, raw: bytes, fields: dict[str, Any]) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            return self._publish(staging, raw, fields)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path, raw: bytes, fields: dict[str, Any]) -> str:
        _write_synced(staging / MODEL_FILE, raw)
        for _ in range(1000):
            version = _format_version(self._next_number())
            manifest = Manifest(version=version, **fields)
            text = Manifest.from_json(manifest.to_json(), source="new manifest").to_json()
            _write_synced(staging / MANIFEST_FILE, text.encode())
            try:
                staging.rename(self.root / version)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue  # another process took this number first; try the next one
            _fsync_dir(self.root)
            logger.info("registry %s: registered %s", self.root, version)
            return version
        msg = f"could not allocate a version number under {self.root}"
        raise RegistryError(msg)

    def _next_number(self) -> int:
        numbers = [_version_number(p.name) for p in self.root.iterdir() if _is_version(p.name)]
        return max(numbers, default=0) + 1

    def _version_dir(self, version: str) -> Path:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            self._not_found(version)
        return self.root / version

    def _not_found(self, version: object) -> NoReturn:
        known = ", ".join(self.versions()) or "none"
        msg = f"no model version {version!r} in registry {self.root} (versions: {known}); "
        msg += "run fraudstream models list"
        raise ModelNotFound(msg)

    def _events(self) -> list[dict[str, str]]:
        path = self.root / "HISTORY"
        if not path.is_file():
            return []
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                event = json.loads(line)
                events.append({"action": str(event["action"]), "version": str(event["version"])})
            except (ValueError, KeyError, TypeError):
                msg = f"{path} line {number} is not a history event; restore the file"
                raise ModelCorrupt(msg) from None
        return events

    def _append_event(self, action: str, version: str) -> None:
        path = self.root / "HISTORY"
        old = path.read_bytes() if path.is_file() else b""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        line = json.dumps({"action": action, "version": version, "at": at}) + "\n"
        _atomic_write(path, old + line.encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _check_model_bytes(raw: bytes, manifest: Manifest, path: Path) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != manifest.sha256:
        msg = f"{path} fails its checksum (sha256 {digest[:12]}..., manifest says "
        msg += f"{manifest.sha256[:12]}...): the file was changed or truncated; re-register it"
        raise ModelCorrupt(msg)
    if raw[:1] == _PICKLE_MAGIC:
        msg = f"{path} is a Python pickle, which is refused (it can execute code on load); "
        msg += "save the booster with Booster.save_model('model.ubj') and register that"
        raise ModelCorrupt(msg)
    if raw[:1] != _UBJ_OBJECT:
        msg = f"{path} is not an XGBoost UBJSON model (starts with {raw[:8]!r}); re-register it"
        raise ModelCorrupt(msg)


def _atomic_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _write_synced(temp, data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_version(name: str) -> bool:
    return _VERSION_RE.match(name) is not None


def _version_number(name: str) -> int:
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else -1


def _format_version(number: int) -> str:
    return f"v{number:04d}"
