"""Script calls on one Redis connection: several EVALSHA sent at once (one round trip),
read in order, each sent again as EVAL if the server does not know its script. A script's
error names the file and line of ``features/lua/`` it comes from."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from fraudstream.features.redis_lua_files import LuaScript

CHUNK_SIZE = 128
"""Transactions per script call: Redis runs one script at a time, so a batch is sent as
calls of this many (pipelined, one round trip) to let other clients in between."""


class Script:
    """A Lua script sent by SHA, loaded on first NOSCRIPT."""

    def __init__(self, lua: LuaScript) -> None:
        self.lua = lua
        self.source = lua.source
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


Call = tuple[Script, list[str], list[Any]]
"""(script, KEYS, ARGV) of one script call."""


def pack(command: str, script: str, keys: list[str], args: list[Any]) -> bytes:
    """The RESP bytes of a script call, packed in C (redis-py's packer loops in Python)."""
    return bytes(hiredis.pack_command((command, script, len(keys), *keys, *args)))


def send(conn: Any, calls: Sequence[Call]) -> None:
    """Write every call on ``conn`` at once."""
    conn.send_packed_command([pack("EVALSHA", s.sha, k, a) for s, k, a in calls])


def receive(conn: Any, calls: Sequence[Call], deadline: float | None) -> list[Any]:
    """The replies of ``calls`` sent with ``send``, in order, by ``deadline`` (monotonic
    seconds, None: the socket's timeout). A call whose script the server lacks is sent
    again as EVAL once every reply is read (a script is only missing after a restart or
    SCRIPT FLUSH, when every call of the batch misses it). Other errors raise, a script's
    error pointing at its ``features/lua/`` file and line."""
    replies: list[Any] = []
    missing: list[int] = []
    for i, (script, _, _) in enumerate(calls):
        try:
            replies.append(_read(conn, script, deadline))
        except NoScriptError:
            replies.append(None)
            missing.append(i)
    for i in missing:
        script, keys, args = calls[i]
        conn.send_packed_command([pack("EVAL", script.source, keys, args)])
        replies[i] = _read(conn, script, deadline)
    return replies


def _read(conn: Any, script: Script, deadline: float | None) -> Any:
    try:
        return conn.read_response(**_timeout(deadline))
    except ResponseError as exc:
        # Redis numbers the lines of the assembled script: name the file's instead
        exc.args = (script.lua.explain(str(exc)), *exc.args[1:])
        raise


def deadline_of(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def _timeout(deadline: float | None) -> dict[str, float]:
    if deadline is None:
        return {}
    return {"timeout": max(deadline - time.monotonic(), 1e-4)}
