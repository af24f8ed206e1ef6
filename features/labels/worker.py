"""Running the label worker: settings → store → faust app → faust worker, until stopped.

A worker that cannot go on (a batch it cannot decode, a crashed agent) stops with one error
line naming the cause and a non-zero status, for a supervisor to restart it: faust would
otherwise exit 1 after its tracebacks, with nothing saying which of them mattered. Nothing
past the failed batch was committed, so the restarted worker reads it again.

``python -m fraudstream.features.labels.worker [flags]`` runs it without the ``fraudstream`` CLI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fraudstream.features.exceptions import FraudstreamError
from fraudstream.features.labels.exceptions import LabelWorkerCrashed
from fraudstream.features.labels.settings import LabelSettings

logger = logging.getLogger(__name__)


def run(settings: LabelSettings) -> int:
    """Start the worker; returns its exit status once it stops (SIGTERM/SIGINT: 0). Raises
    ``LabelWorkerCrashed`` when a faust service or agent crashed."""
    import faust

    from fraudstream.features.labels.app import build_app
    from fraudstream.features.labels.preflight import check_codecs, check_kafka
    from fraudstream.features.redis_store import RedisStore

    logger.info("label worker settings: %s", settings.redacted())
    check_codecs()
    check_kafka(settings)
    scratch = _scratch_data_dir(settings)
    if scratch is not None:
        settings = settings.model_copy(update={"data_dir": Path(scratch.name)})
    store = RedisStore.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    try:
        built = build_app(settings, store)
        worker = faust.Worker(
            built.app,
            quiet=True,
            loglevel=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            redirect_stdouts=False,
            override_logging=False,
        )
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            crash = worker.crash_reason or built.app.crash_reason
            if crash is not None:
                raise LabelWorkerCrashed(describe_crash(crash)) from None
            return exc.code if isinstance(exc.code, int) else 1
        return 0
    finally:
        store.close()
        if scratch is not None:
            scratch.cleanup()


def _scratch_data_dir(settings: LabelSettings) -> tempfile.TemporaryDirectory[str] | None:
    """A directory removed at exit for faust's data directory, when nothing in it outlives
    the worker: the memory table store keeps its tables in memory (their changelog topic is
    the durable copy), yet faust still creates ``<app id>-data/`` in the working directory,
    one per group id. None when ``data_dir`` is set or the store writes there (rocksdb)."""
    if settings.data_dir is not None or not settings.table_store.startswith("memory:"):
        return None
    return tempfile.TemporaryDirectory(prefix=f"fraudstream-{settings.group_id}-")


def describe_crash(exc: BaseException) -> str:
    """One line for the error that stopped the worker, with what to do when it is known."""
    text = str(exc).replace("\n", " ")
    name = type(exc).__name__
    what = text if text.startswith(name) else f"{name}: {text}" if text else name
    errors: Any = importlib.import_module("aiokafka.errors")  # untyped: Any here only
    if isinstance(exc, errors.UnsupportedCodecError):
        what += (
            " (a producer compresses with a codec this installation cannot decode: install "
            "fraudstream's dependencies, or pip install 'aiokafka[lz4,snappy,zstd]')"
        )
    return (
        f"label worker stopped: {what}; the batch was not committed and is read again once "
        "the worker is restarted"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``run``'s flags and run (for ``python -m fraudstream.features.labels.worker``)."""
    from fraudstream.features.labels.commands import add_run_flags, settings_from_args

    parser = argparse.ArgumentParser(prog="fraudstream.features.labels.worker", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    add_run_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return run(settings_from_args(args))
    except FraudstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
