"""A serve process's identity: the name it keeps across restarts.

Exactly-once needs it: a restarted process that takes its predecessor's transactional id
fences it (``init_transactions`` aborts the open transaction at once, instead of the broker
after ``transaction.timeout.ms``), so the group's offsets and the output partitions are
readable again at once. (Static group membership would also spare the restart the dead
member's session timeout, but a static member whose session expires during a broker
outage is fenced by its own rejoin, a fatal error for librdkafka: serve keeps dynamic
membership and a short session instead.)

Where the name comes from:

- ``--instance-id NAME`` (a StatefulSet pod's ordinal, a compose service's replica
  number): the operator keeps it unique in the group; a second live process with the same
  name fences the first, which exits with an error saying so.
- Otherwise ``<host>-<slot>``: the process takes the lowest free slot on this host, a slot
  being an exclusive lock (``flock``) on ``<lock_dir>/<group>.slot-<k>.lock``, held until
  the process ends (the kernel releases it even on SIGKILL). Two live processes on one
  host never share a slot, and a process restarted after a crash takes the slot (and the
  name) its predecessor left. Host names must then be stable across restarts (a
  StatefulSet's pod names, a container restarted in place).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fraudstream.features.exceptions import ConfigError

logger = logging.getLogger(__name__)

MAX_SLOTS = 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Identity:
    """The name a serve process keeps across restarts, and what Kafka knows it by."""

    name: str
    """Instance name, unique in the group."""
    group_id: str
    """Consumer group."""
    lock: IO[str] | None = None
    """The slot lock held for the process's lifetime (None with ``--instance-id``)."""

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.name}"

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "fraudstream"


def claim(group_id: str, instance_id: str | None, lock_dir: Path | None = None) -> Identity:
    """The identity of this process (see the module docstring)."""
    if instance_id:
        if _SAFE.search(instance_id):
            msg = (
                f"instance id {instance_id!r} may hold letters, digits, '.', '_' and '-' "
                "only (it becomes part of Kafka ids)"
            )
            raise ConfigError(msg)
        return Identity(instance_id, group_id)
    folder = lock_dir or default_lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the instance lock folder {folder}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    host = _SAFE.sub("-", socket.gethostname()) or "host"
    stem = _SAFE.sub("-", group_id)
    for slot in range(MAX_SLOTS):
        lock = _try_lock(folder / f"{stem}.slot-{slot}.lock")
        if lock is not None:
            name = f"{host}-{slot}"
            logger.info("instance %s (slot %d on this host, lock in %s)", name, slot, folder)
            return Identity(name, group_id, lock)
    msg = f"all {MAX_SLOTS} instance slots of group {group_id} on this host are taken"
    raise ConfigError(msg)


def _try_lock(path: Path) -> IO[str] | None:
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
