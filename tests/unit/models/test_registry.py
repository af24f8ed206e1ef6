from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.exceptions import ModelCorrupt, ModelNotFound, RegistryError
from fraudstream.models.registry import Registry
from tests.unit.models.conftest import NAMES, TREES, register, synthetic


def test_round_trip_keeps_the_model_and_the_manifest(
    registry: Registry, booster: xgb.Booster
) -> None:
    version = register(registry, booster, truncation_trees=5)
    assert version == "v0001"
    assert registry.versions() == ["v0001"]
    manifest, raw = registry.read_model(version)
    assert manifest.feature_names == NAMES
    assert manifest.num_trees == TREES
    assert manifest.truncation_trees == 5
    assert manifest.sha256 == hashlib.sha256(raw).hexdigest()
    assert manifest.xgboost_version == xgb.__version__
    assert manifest.metrics == {"roc_auc": 0.9, "average_precision": None}
    assert registry.model_path(version).read_bytes()[:1] == b"{"
    loaded = xgb.Booster()
    loaded.load_model(bytearray(raw))
    x, _ = synthetic(50, seed=1)
    dm = xgb.DMatrix(x, feature_names=list(NAMES))
    np.testing.assert_array_equal(loaded.predict(dm), booster.predict(dm))


def test_versions_are_sequential_and_sorted_numerically(
    registry: Registry, booster: xgb.Booster
) -> None:
    for _ in range(3):
        register(registry, booster)
    (registry.root / "v10000").mkdir()  # no manifest: not a version
    assert registry.versions() == ["v0001", "v0002", "v0003"]
    assert not list(registry.root.glob(".staging-*"))


def test_unknown_or_malicious_version_is_not_found(registry: Registry, version: str) -> None:
    with pytest.raises(ModelNotFound, match=r"no model version 'v0099' .*versions: v0001"):
        registry.manifest("v0099")
    with pytest.raises(ModelNotFound, match="no model version '../v0001'"):
        registry.read_model("../v0001")


def test_promote_and_rollback_walk_the_history(registry: Registry, booster: xgb.Booster) -> None:
    v1, v2, v3 = (register(registry, booster) for _ in range(3))
    assert registry.current() is None
    with pytest.raises(RegistryError, match="no earlier promotion"):
        registry.rollback()
    for version in (v1, v2, v3):
        registry.promote(version)
    assert registry.current() == v3
    assert registry.history() == [v1, v2, v3]
    assert registry.rollback() == v2
    assert registry.current() == v2
    assert registry.rollback() == v1
    with pytest.raises(RegistryError, match="no earlier promotion"):
        registry.rollback()
    assert registry.current() == v1
    assert (registry.root / "CURRENT").read_text() == "v0001\n"


def test_promote_refuses_a_corrupt_model(registry: Registry, version: str) -> None:
    path = registry.model_path(version)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCorrupt, match="fails its checksum .* changed or truncated"):
        registry.promote(version)
    assert registry.current() is None


def test_pickle_is_refused_even_with_a_matching_checksum(
    registry: Registry, version: str, booster: xgb.Booster
) -> None:
    payload = pickle.dumps(booster)
    registry.model_path(version).write_bytes(payload)
    manifest_path = registry.root / version / "manifest.json"
    text = manifest_path.read_text()
    old = registry.manifest(version).sha256
    manifest_path.write_text(text.replace(old, hashlib.sha256(payload).hexdigest()))
    with pytest.raises(ModelCorrupt, match="is a Python pickle, which is refused"):
        registry.read_model(version)


def test_corrupt_manifest_names_the_file_and_field(registry: Registry, version: str) -> None:
    path = registry.root / version / "manifest.json"
    path.write_text(path.read_text().replace('"num_trees": 20', '"num_trees": "many"'))
    with pytest.raises(ModelCorrupt, match=r"manifest.json: field 'num_trees' has the wrong type"):
        registry.manifest(version)


def test_amend_records_truncation_but_not_identity(registry: Registry, version: str) -> None:
    assert registry.amend(version, truncation_trees=7).truncation_trees == 7
    assert registry.manifest(version).truncation_trees == 7
    with pytest.raises(RegistryError, match="cannot amend \\['sha256'\\]"):
        registry.amend(version, sha256="0" * 64)
    with pytest.raises(ModelCorrupt, match="'truncation_trees' \\(99\\) exceeds"):
        registry.amend(version, truncation_trees=99)
    assert registry.manifest(version).truncation_trees == 7


def test_garbage_current_is_reported(registry: Registry, version: str) -> None:
    (registry.root / "CURRENT").write_text("rm -rf /")
    with pytest.raises(ModelCorrupt, match="CURRENT holds 'rm -rf /', not a version"):
        registry.current()


PROMOTER = textwrap.dedent(
    """
    import sys
    from fraudstream.models.registry import Registry
    registry = Registry(sys.argv[1])
    for i in range(int(sys.argv[2])):
        registry.promote(sys.argv[3 + i % 2])
    """
)


def test_concurrent_readers_never_see_a_half_written_current(
    registry: Registry, booster: xgb.Booster
) -> None:
    versions = [register(registry, booster) for _ in range(3)]
    registry.promote(versions[0])
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append((registry.root / "CURRENT").read_text())
                assert registry.current() in versions
            except BaseException as exc:  # collected, asserted empty below
                errors.append(exc)

    def promote(a: str, b: str) -> None:
        for i in range(100):
            registry.promote((a, b)[i % 2])

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=promote, args=(versions[1], versions[2]))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTER, str(registry.root), "100", versions[0], versions[2]],
            cwd=Path(__file__).parents[3],
        )
        for _ in range(2)
    ]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    stop.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert set(seen) <= {f"{v}\n" for v in versions}
    assert len(seen) > 100
    assert len(registry.history()) == 1 + 100 + 2 * 100
