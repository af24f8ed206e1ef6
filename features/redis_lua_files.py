"""The Lua of the Redis store, read from ``features/lua/*.lua`` (package data): scripts
assembled from shared parts, with a line map so that an error Redis reports at
``user_script:N`` names the file and line it comes from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

LUA_FOLDER = "features/lua"
"""Where the files live in the repository, as error messages name them."""
_USER_SCRIPT = re.compile(r"@?user_script:(\d+)")
"""How Redis names a line of the script it runs, in its error messages."""


def read_lua(name: str) -> str:
    """The text of ``features/lua/<name>``, ending with a newline."""
    text = resources.files("fraudstream.features").joinpath("lua", name).read_text("utf-8")
    return text if text.endswith("\n") else text + "\n"


@dataclass(frozen=True)
class LuaPart:
    """One piece of an assembled script."""

    path: str
    """Where it comes from, e.g. ``features/lua/sorted_runs.lua``; ``#!lua shebang`` for
    the line that declares the script's flags."""
    first: int
    """Its first line in the script, 1-based."""
    lines: int
    """How many lines it has."""


@dataclass(frozen=True)
class LuaScript:
    """A script as Redis runs it, and where each of its lines comes from."""

    source: str
    """The text sent to Redis."""
    parts: tuple[LuaPart, ...]
    """Its pieces, in order, covering every line."""

    def where(self, line: int) -> str:
        """``features/lua/<file>.lua:<line>`` for line ``line`` of the script (1-based);
        ``user_script:<line>`` when it is past the end."""
        for part in self.parts:
            if part.first <= line < part.first + part.lines:
                return f"{part.path}:{line - part.first + 1}"
        return f"user_script:{line}"

    def explain(self, message: str) -> str:
        """``message`` (a Redis error) with each ``user_script:N`` (``@user_script:N``)
        replaced by the file and line it points at."""
        return _USER_SCRIPT.sub(lambda m: self.where(int(m.group(1))), message)


def assemble(*names: str, flags: str | None = None) -> LuaScript:
    """The script made of ``features/lua/<name>`` for each name, in order. ``flags``:
    the script's Redis flags (e.g. ``allow-cross-slot-keys``), declared on a first line
    of its own, ``#!lua flags=...``, which Redis counts as line 1."""
    pieces: list[tuple[str, str]] = []
    if flags is not None:
        pieces.append(("#!lua shebang", f"#!lua flags={flags}\n"))
    pieces += [(f"{LUA_FOLDER}/{name}", read_lua(name)) for name in names]
    parts, line = [], 1
    for path, text in pieces:
        count = text.count("\n")
        parts.append(LuaPart(path, line, count))
        line += count
    return LuaScript("".join(text for _, text in pieces), tuple(parts))
