"""A short `make demo` run (the `--tiny` dataset) against the suite's broker and Redis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import ROOT

pytestmark = pytest.mark.integration


def test_tiny_demo_decides_every_replayed_transaction_and_writes_a_report(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    data_dirs = set(ROOT.glob("*-data"))
    done = subprocess.run(
        [
            sys.executable,
            "ops/demo.py",
            "--tiny",
            "--bootstrap",
            kafka_bootstrap,
            "--redis-url",
            redis_url,
            "--out",
            str(tmp_path / "demo"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    match = re.search(
        r"DEMO SUMMARY decisions=(\d+) transactions=(\d+) rungs=(\S+) labels=(\d+) "
        r"report=(\S+)",
        done.stdout,
    )
    assert match, done.stdout[-3000:]
    decisions, transactions = int(match.group(1)), int(match.group(2))
    assert transactions > 5000
    assert decisions == transactions
    rungs = {k: int(v) for k, v in (pair.split(":") for pair in match.group(3).split(","))}
    assert sum(rungs.values()) == decisions
    # the store is up all along: no decision is made blind (slow replies are waited for)
    assert rungs["partial_features"] == 0 and rungs["rules"] == 0
    assert "`make down` stops them" in done.stdout
    # the replayed labels (on lz4-compressed topics) reached the store through the worker
    assert int(match.group(4)) > 100
    report = Path(match.group(5))
    assert (report / "report.md").is_file()
    assert (report / "metrics.json").is_file()
    assert list(report.glob("*.png"))
    # the label worker's faust data directory was a temporary one, not <group-id>-data/ here
    assert set(ROOT.glob("*-data")) == data_dirs
