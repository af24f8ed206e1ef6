"""The store's Lua lives in ``features/lua/*.lua``: every file and every assembled script
compiles as Lua 5.1 (the version Redis embeds), the line map of an assembled script points
at the file and line each of its lines comes from, the constants the files declare agree
with ``fraudstream.features.store``, and no Lua is left in Python strings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lupa.lua51
import pytest

from fraudstream.features import redis_scripts
from fraudstream.features.definitions import CENTS_CAP
from fraudstream.features.redis_lua_files import LuaScript, assemble
from fraudstream.features.store import FLAG_CAPPED, FLAG_CONFLICT, FLAG_OUTLIER, TRIM_STEP

ROOT = Path(__file__).resolve().parents[3]
LUA = ROOT / "features" / "lua"
FILES = sorted(LUA.glob("*.lua"))
SCRIPTS: dict[str, LuaScript] = {
    name: getattr(redis_scripts, name)
    for name in (
        "APPLY_TRANSACTIONS",
        "APPLY_IDS",
        "APPLY_TERMINALS",
        "APPLY_CUSTOMERS",
        "APPLY_LOCAL",
        "REPLACE_LOG",
        "APPEND_LOGS",
        "APPLY_LABELS",
        "APPLY_LABELS_CROSS_SLOT",
    )
}
STANDALONE = {"rebuild_seal.lua", "group_order.lua"}
"""Files run as they are (``fraudstream.features.rebuild``, ``fraudstream.stream.group_order``),
not assembled."""
PACKAGES = ("features", "stream", "models", "fraudstream")
LUA_IN_TEXT = re.compile(
    r"redis\.call\(|\blocal\s+function\b|\blocal\s+[A-Za-z_]\w*\s*=|\b(?:KEYS|ARGV)\[\d"
)
"""What Lua source looks like, and prose about it does not."""


@pytest.fixture(scope="module")
def compile_lua() -> lupa.lua51.LuaRuntime:
    """``compile(text, chunkname)``: None, or Lua 5.1's syntax error."""
    runtime = lupa.lua51.LuaRuntime()
    return runtime.eval("function(s, name) local _, err = loadstring(s, name); return err end")


def _as_redis_loads(source: str) -> str:
    """Redis drops a ``#!lua`` first line and keeps its newline, so line numbers hold."""
    if source.startswith("#!"):
        return source[source.index("\n") :]
    return source


def test_the_folder_holds_the_scripts() -> None:
    assert len(FILES) == 18


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_lua_file_compiles_as_lua_5_1(compile_lua: lupa.lua51.LuaRuntime, path: Path) -> None:
    assert compile_lua(path.read_text(), f"@features/lua/{path.name}") is None


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_assembled_script_compiles_as_lua_5_1(
    compile_lua: lupa.lua51.LuaRuntime, name: str
) -> None:
    # e.g. Lua 5.1 allows 200 locals in a chunk: only the whole script can break that
    assert compile_lua(_as_redis_loads(SCRIPTS[name].source), f"@{name}") is None


def test_the_compile_check_names_the_file_and_line_of_an_error(
    compile_lua: lupa.lua51.LuaRuntime,
) -> None:
    error = compile_lua("local a = 1\n-- ok\nlocal b = a //2\n", "@features/lua/probe.lua")
    assert error == "features/lua/probe.lua:3: unexpected symbol near '/'"


def test_every_file_is_run() -> None:
    used = {p.path.removeprefix("features/lua/") for s in SCRIPTS.values() for p in s.parts}
    assert used - {"#!lua shebang"} | STANDALONE == {p.name for p in FILES}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_line_map_names_the_file_and_line_of_every_line(name: str) -> None:
    script = SCRIPTS[name]
    files = {p.name: p.read_text().splitlines() for p in FILES}
    lines = script.source.splitlines()
    for n, text in enumerate(lines, start=1):
        path, _, m = script.where(n).rpartition(":")
        if path == "#!lua shebang":
            assert (n, text) == (1, "#!lua flags=allow-cross-slot-keys")
        else:
            assert files[path.removeprefix("features/lua/")][int(m) - 1] == text, (n, path, m)
    assert script.where(len(lines) + 1) == f"user_script:{len(lines) + 1}"


def test_a_redis_error_is_explained_with_the_file_and_line() -> None:
    script = assemble("transaction_args.lua", "sorted_runs.lua")
    n = script.parts[1].first + 38
    message = f"user_script:{n}: boom script: 5f5f, on @user_script:{n}."
    assert script.explain(message) == (
        "features/lua/sorted_runs.lua:39: boom script: 5f5f, on features/lua/sorted_runs.lua:39."
    )


def test_the_shebang_is_line_one_of_a_cluster_script() -> None:
    plain, cross = SCRIPTS["APPLY_TRANSACTIONS"], SCRIPTS["APPLY_IDS"]
    assert cross.source.startswith("#!lua flags=allow-cross-slot-keys\n")
    assert [p.first for p in cross.parts[1:4]] == [p.first + 1 for p in plain.parts[:3]]


def _lua_constants() -> dict[str, list[tuple[str, float]]]:
    """NAME -> (file, value) of every ``local A, B = 1, 2`` line of number literals."""
    declared: dict[str, list[tuple[str, float]]] = {}
    pattern = re.compile(r"^local ([\w, ]+) = ([\d., ]+)$")
    for path in FILES:
        for line in path.read_text().splitlines():
            if m := pattern.match(line):
                names, values = m.group(1).split(", "), m.group(2).split(", ")
                for name, value in zip(names, values, strict=True):
                    declared.setdefault(name, []).append((path.name, float(value)))
    return declared


def test_the_lua_constants_agree_with_the_store() -> None:
    declared = _lua_constants()
    assert declared["STEP"] == [("sorted_runs.lua", TRIM_STEP)]
    assert declared["FLAG_OUTLIER"] == [("sorted_runs.lua", FLAG_OUTLIER)]
    assert declared["FLAG_CAPPED"] == [("sorted_runs.lua", FLAG_CAPPED)]
    assert declared["FLAG_CONFLICT"] == [("entity_histories.lua", FLAG_CONFLICT)]
    assert declared["CENTS_CAP"] == [("amount_history.lua", CENTS_CAP)]


def _lua_in_strings(path: Path) -> list[str]:
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines = sorted(
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and LUA_IN_TEXT.search(node.value)
    )
    return [f"{where}:{n}" for n in lines]


def test_no_lua_is_left_in_python_strings() -> None:
    sources = [p for d in PACKAGES for p in (ROOT / d).rglob("*.py") if not p.is_symlink()]
    sources = [p for p in sources if "__pycache__" not in p.parts]
    assert len(sources) > 50  # the walk found the packages
    assert [hit for p in sources for hit in _lua_in_strings(p)] == []


def test_the_check_finds_lua_in_a_python_string(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Calls ``redis.call`` through KEYS and ARGV."""\n'
        'A = "local n = tonumber(ARGV[1])"\n'
        "B = f\"return redis.call('GET', {1})\"\n"
        'C = "local function f() end"\n'
    )
    assert [hit.rsplit(":", 1)[1] for hit in _lua_in_strings(probe)] == ["2", "3", "4"]
