"""One import namespace: the folders stream/, features/ and models/ install as
``fraudstream.stream``, ``.features`` and ``.models``; nothing imports them by their bare
names; a wheel puts a single top-level package, ``fraudstream``, into site-packages; and
the public API of ``fraudstream`` scores transactions as serve does."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

import fraudstream
from fraudstream.features.definitions import FEATURE_NAMES, FeatureConfig
from fraudstream.models.manifest import Thresholds, TrainWindow
from fraudstream.models.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("stream", "features", "models")
SKIPPED = {".venv", "var", ".git", "build", "fraudstream", ".mypy_cache", ".ruff_cache"}


def _sources() -> list[Path]:
    return [
        p
        for p in ROOT.rglob("*.py")
        if not set(p.relative_to(ROOT).parts[:-1]) & SKIPPED and "__pycache__" not in p.parts
    ]


def _bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        found += [f"{where}:{node.lineno} {n}" for n in names if _bare(n)]
    return found


def _bare(module: str) -> bool:
    return module.split(".")[0] in FOLDERS


def test_the_symlinks_map_the_folders_into_the_namespace() -> None:
    for name in FOLDERS:
        link = ROOT / "fraudstream" / name
        assert link.is_symlink() and link.resolve() == ROOT / name, link


def test_no_source_imports_a_folder_by_its_bare_name() -> None:
    sources = _sources()
    assert len(sources) > 100  # the walk found the project
    offenders = [hit for path in sources for hit in _bare_imports(path)]
    assert offenders == []


def test_the_check_finds_a_bare_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from models.scorer import Scorer\nimport stream.cli\nimport fraudstream\n")
    assert [hit.split()[-1] for hit in _bare_imports(module)] == ["models.scorer", "stream.cli"]


def test_the_modules_load_under_fraudstream_only() -> None:
    import fraudstream.stream.cli

    assert fraudstream.stream.cli.__name__ == "fraudstream.stream.cli"
    assert not {name for name in sys.modules if _bare(name)}


@pytest.mark.slow
def test_the_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*cmd, "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    [wheel] = tmp_path.glob("fraudstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"fraudstream"}
    for expected in (
        "fraudstream/__init__.py",
        "fraudstream/stream/cli.py",
        "fraudstream/features/schemas/transaction.schema.json",
        "fraudstream/features/lua/apply_transactions.lua",
        "fraudstream/models/scorer.py",
    ):
        assert expected in names, expected
    entry = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "fraudstream = fraudstream.stream.cli:main" in entry


def _registry(tmp_path: Path) -> Registry:
    """A registry whose CURRENT model declines amounts above 400: trained on the amount
    alone, so its decisions are known in advance."""
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 500, size=(2000, len(FEATURE_NAMES))).astype(np.float32)
    y = (x[:, 0] > 400).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(x, label=y, feature_names=list(FEATURE_NAMES)),
        num_boost_round=10,
    )
    registry = Registry(tmp_path / "registry")
    config = FeatureConfig()
    version = registry.register(
        booster,
        feature_names=list(FEATURE_NAMES),
        schema_hash=config.schema_hash(),
        params={"max_depth": 2},
        train_window=TrainWindow("2026-11-01T00:00:00+00:00", "2026-11-08T00:00:00+00:00"),
        data_fingerprint="synthetic",
        metrics={},
        thresholds=Thresholds(review=0.3, decline=0.7),
        device="cpu",
        features=config.describe(),
    )
    registry.promote(version)
    return registry


def _tx(i: int, amount: float) -> dict[str, object]:
    return {
        "transaction_id": f"t{i}",
        "event_time": f"2026-12-03T10:00:{i:02d}Z",
        "customer_id": "c1",
        "terminal_id": "term9",
        "amount": amount,
    }


def test_the_public_api_loads_scores_and_decides(tmp_path: Path) -> None:
    model = fraudstream.load_model(_registry(tmp_path).root)
    store = fraudstream.MemoryStore()
    decisions = fraudstream.score([_tx(0, 20.0), _tx(1, 480.0)], model, store)
    assert [d.transaction_id for d in decisions] == ["t0", "t1"]
    assert [d.decision for d in decisions] == ["approve", "decline"]
    assert decisions[1].model_version == model.version and decisions[1].reasons
    assert decisions[0].degraded is None and decisions[0].flags == []
    # the store kept them: the customer's 1-day window now counts both
    [later] = fraudstream.score([_tx(2, 30.0)], model, store)
    assert later.decision == "approve"


def test_the_public_api_names_the_bad_transaction(tmp_path: Path) -> None:
    model = fraudstream.load_model(_registry(tmp_path).root)
    bad = _tx(1, 10.0) | {"amount": "ten"}
    with pytest.raises(fraudstream.InvalidTransaction, match=r"transaction 1: .*amount"):
        fraudstream.score([_tx(0, 10.0), bad], model, fraudstream.MemoryStore())


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python block, verbatim, against a registry where ``make demo`` puts one."""
    readme = (ROOT / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert 'load_model("var/demo/registry")' in block
    registry = _registry(tmp_path / "var" / "demo").root
    assert registry == tmp_path / "var" / "demo" / "registry"
    monkeypatch.chdir(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    decision, score, *_ = out.stdout.split()
    assert decision == "decline" and float(score) > 0.7


def _loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_command_line_starts_without_matplotlib() -> None:
    """Plots are drawn by a few report commands only: the parser of every command must not
    pay for loading matplotlib."""
    loaded = _loaded_after("from fraudstream.stream.cli import build_parser; build_parser()")
    assert "fraudstream" in loaded
    assert "matplotlib" not in loaded


@pytest.mark.parametrize(
    ("argv", "modules", "needed"),
    [
        (
            ["--log-level", "INFO", "serve", "--registry", "r"],
            "fraudstream.stream.service, fraudstream.stream.serve",
            {"xgboost", "confluent_kafka", "redis"},
        ),
        (
            ["features", "run", "--group-id", "g"],
            "fraudstream.features.labels.worker, fraudstream.features.labels.app",
            {"faust", "confluent_kafka", "redis"},
        ),
    ],
)
def test_the_long_running_commands_start_without_pandas(
    argv: list[str], modules: str, needed: set[str]
) -> None:
    """A restarted serve or label worker loads its parser and its loop only: no training,
    replay or report code, so neither pandas, pyarrow nor matplotlib (a third of serve's
    start-up time)."""
    loaded = _loaded_after(
        "from fraudstream.stream.cli import build_parser, command_of\n"
        f"build_parser(command_of({argv!r}))\n"
        f"import {modules}"
    )
    assert needed <= loaded
    assert not {"pandas", "pyarrow", "matplotlib"} & loaded
