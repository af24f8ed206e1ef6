"""Instance identities: a named one as given, else the lowest free slot on this host, kept
by a lock that another live process cannot take and a dead one leaves behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.stream.identity import claim


def test_a_named_instance_gives_the_transactional_id() -> None:
    identity = claim("fraudstream", "serve-2")
    assert identity.transactional_id == "fraudstream-serve-2"
    with pytest.raises(ConfigError, match="letters, digits"):
        claim("fraudstream", "a b")


def test_live_processes_get_distinct_slots_and_a_freed_slot_is_taken_again(
    tmp_path: Path,
) -> None:
    host = socket.gethostname()
    first = claim("g", None, tmp_path)
    second = claim("g", None, tmp_path)
    assert first.name.endswith("-0") and second.name.endswith("-1")
    assert first.name.startswith(host.replace(" ", "-")[:3])
    first.release()
    again = claim("g", None, tmp_path)
    other = claim("other-group", None, tmp_path)
    assert again.name == first.name
    assert other.name.endswith("-0")
    for identity in (second, again, other):
        identity.release()


def test_a_killed_holder_leaves_its_slot_to_the_next_process(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path; "
        "from fraudstream.stream.identity import claim; "
        f"i = claim('g', None, Path({str(tmp_path)!r})); print(i.name, flush=True); "
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    held = holder.stdout.readline().strip()
    holder.stdout.close()
    assert held.endswith("-0")
    meanwhile = claim("g", None, tmp_path)
    assert meanwhile.name.endswith("-1")  # taken while it lives
    holder.kill()
    holder.wait(10)
    time.sleep(0.1)
    restarted = claim("g", None, tmp_path)
    assert restarted.name == held  # the restart takes the same name
    meanwhile.release()
    restarted.release()
