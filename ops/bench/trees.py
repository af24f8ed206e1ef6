"""The code an A/B arm runs: ``--arm NAME=TREE``, where TREE is a directory holding a checkout
(its ``fraudstream`` package is imported from there, in the arm's own process) or a git
revision of this repository (checked out into a temporary worktree, removed after)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_arm(p: argparse.ArgumentParser, spec: str) -> tuple[str, str]:
    """(name, tree) of ``--arm NAME=TREE``; exits through ``p`` on anything else."""
    name, sep, where = spec.partition("=")
    if not sep or not name or not where:
        p.error(f"--arm {spec!r}: expected NAME=TREE or NAME=REVISION")
    return name, where


@contextlib.contextmanager
def arm_tree(where: str) -> Iterator[Path]:
    """A directory whose ``fraudstream`` package is the arm's code."""
    path = Path(where)
    if path.is_dir():
        if not (path / "fraudstream").is_dir():
            sys.exit(f"error: {path} holds no fraudstream package (not a checkout?)")
        yield path.resolve()
        return
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{where}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if rev.returncode != 0:
        sys.exit(f"error: {where!r} is neither a directory nor a git revision of {ROOT}")
    folder = Path(tempfile.mkdtemp(prefix="bench-arm-")) / "tree"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(folder), rev.stdout.strip()], check=True)
    try:
        yield folder
    finally:
        subprocess.run([*git, "remove", "--force", str(folder)], check=False)
