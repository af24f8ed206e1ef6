"""Column-wise checks of decoded JSON fields, shared by the transaction and label decoders.

Each check takes one field's values across a batch (``MISSING`` where absent) and returns
the converted values plus ``Problem`` tuples for the positions that fail. Homogeneous,
well-formed columns (the normal case) take a fast path of a few C-level passes.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

MISSING: Final = object()
"""Placeholder for a field that is absent from a message."""

MAX_ID_LENGTH = 128
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
"""RFC 3339 date-time; the JSON Schema files carry the same pattern."""

Problem = tuple[int, str, str, str]
"""(position in the column, error code, field, message)."""


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _missing(pos: int, field: str) -> Problem:
    return (pos, "missing_field", field, f"{field} is required: add it to the message")


def _bad_type(pos: int, field: str, value: object, wanted: str) -> Problem:
    msg = f"{field} must be {wanted}, got {_type_name(value)}: send it as {wanted}"
    return (pos, "bad_type", field, msg)


def check_ids(col: list[Any], field: str) -> tuple[list[str], list[Problem]]:
    """Non-empty strings of at most 128 characters, or integers (turned into strings)."""
    if all(type(v) is str for v in col) and col:
        lengths = list(map(len, col))
        if min(lengths) >= 1 and max(lengths) <= MAX_ID_LENGTH:
            return col, []
    out: list[str] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        text, problem = _one_id(pos, value, field)
        out.append(text)
        if problem:
            problems.append(problem)
    return out, problems


def _one_id(pos: int, value: object, field: str) -> tuple[str, Problem | None]:
    if value is MISSING:
        return "", _missing(pos, field)
    number = _whole_number(value)
    if number is not None:
        if not INT64_MIN <= number <= INT64_MAX:
            return "", (pos, "bad_value", field, f"{field} {number} is outside the int64 range")
        return str(number), None
    if not isinstance(value, str):
        return "", _bad_type(pos, field, value, "a string or an integer")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        msg = f"{field} must have 1 to {MAX_ID_LENGTH} characters, got {len(value)}"
        return "", (pos, "bad_value", field, msg)
    return value, None


def _whole_number(value: object) -> int | None:
    """An int (not bool), or a float with no fractional part, as int; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def check_amounts(col: list[Any], max_amount: float) -> tuple[list[float], list[Problem]]:
    """Finite JSON numbers (not booleans) in ``[0, max_amount]``."""
    kinds = set(map(type, col))
    if kinds <= {int, float} and col:
        values = [float(v) for v in col]
        if min(values) >= 0 and max(values) <= max_amount:
            return values, []
    out: list[float] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        amount, problem = _one_amount(pos, value, max_amount)
        out.append(amount)
        if problem:
            problems.append(problem)
    return out, problems


def _one_amount(pos: int, value: object, max_amount: float) -> tuple[float, Problem | None]:
    if value is MISSING:
        return 0.0, _missing(pos, "amount")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0, _bad_type(pos, "amount", value, "a number")
    amount = float(value)
    if not math.isfinite(amount) or amount < 0:
        return 0.0, (pos, "bad_value", "amount", f"amount {value!r} must be finite and >= 0")
    if amount > max_amount:
        msg = f"amount {value!r} is above the maximum {max_amount:g}"
        return 0.0, (pos, "bad_value", "amount", msg)
    return amount, None


def check_times(
    col: list[Any], field: str, lowest_ms: int, highest_ms: int | None
) -> tuple[list[int], list[Problem]]:
    """Epoch milliseconds (integers) or RFC 3339 strings, within ``[lowest, highest]``."""
    top = MAX_TIME_MS if highest_ms is None else min(highest_ms, MAX_TIME_MS)
    if all(type(v) is int for v in col) and col:
        if min(col) >= lowest_ms and max(col) <= top:
            return col, []
    out: list[int] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        ms, problem = _one_time(pos, value, field)
        if problem is None:
            problem = _time_range(pos, field, ms, lowest_ms, highest_ms)
        out.append(0 if problem else ms)
        if problem:
            problems.append(problem)
    return out, problems


def time_ms(value: object) -> int | None:
    """Epoch milliseconds from a JSON value as ``check_times`` reads one (a whole number or
    an RFC 3339 string); None when it is neither."""
    number = _whole_number(value)
    if number is not None:
        return number
    return parse_rfc3339_ms(value) if isinstance(value, str) else None


def _one_time(pos: int, value: object, field: str) -> tuple[int, Problem | None]:
    if value is MISSING:
        return 0, _missing(pos, field)
    number = _whole_number(value)
    if number is not None:
        return number, None
    if not isinstance(value, str):
        wanted = "epoch milliseconds (an integer) or an RFC 3339 string"
        return 0, _bad_type(pos, field, value, wanted)
    ms = parse_rfc3339_ms(value)
    if ms is None:
        msg = f"{field} {value[:40]!r} is not RFC 3339 (e.g. 2018-04-01T12:00:00Z)"
        return 0, (pos, "bad_value", field, msg)
    return ms, None


def _time_range(
    pos: int, field: str, ms: int, lowest_ms: int, highest_ms: int | None
) -> Problem | None:
    if ms < lowest_ms:
        return (pos, "bad_value", field, f"{field} {ms} is before the earliest allowed {lowest_ms}")
    if ms > MAX_TIME_MS:
        return (pos, "bad_value", field, f"{field} {ms} is after the year 9999")
    if highest_ms is not None and ms > highest_ms:
        msg = f"{field} {ms} is too far in the future (latest allowed {highest_ms}): check clocks"
        return (pos, "bad_value", field, msg)
    return None


def parse_rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time (sub-millisecond digits dropped), None if invalid."""
    match = RFC3339.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    try:
        stamp = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    if zone not in ("Z", "z"):
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 23 or zm > 59:
            return None
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * timedelta(hours=zh, minutes=zm)
    millis = int((fraction[1:] + "00")[:3]) if fraction else 0
    return int(stamp.timestamp()) * 1000 + millis


def check_optional_text(
    col: list[Any], field: str, allow_int: bool = False
) -> tuple[list[str | None], list[Problem]]:
    """Absent/null -> None; a string as is; an integer as text when ``allow_int``."""
    out: list[str | None] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        if value is MISSING or value is None:
            out.append(None)
        elif isinstance(value, str):
            out.append(value)
        elif allow_int and _whole_number(value) is not None:
            out.append(str(_whole_number(value)))
        else:
            wanted = "a string or an integer" if allow_int else "a string"
            out.append(None)
            problems.append(_bad_type(pos, field, value, wanted))
    return out, problems


def check_optional_object(col: list[Any], field: str) -> tuple[list[Any], list[Problem]]:
    """Absent/null -> None; a JSON object as is."""
    out: list[Any] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        if value is MISSING or value is None:
            out.append(None)
        elif isinstance(value, dict):
            out.append(value)
        else:
            out.append(None)
            problems.append(_bad_type(pos, field, value, "a JSON object"))
    return out, problems


def check_flags(col: list[Any], field: str) -> tuple[list[bool], list[Problem]]:
    """JSON booleans only."""
    out: list[bool] = []
    problems: list[Problem] = []
    for pos, value in enumerate(col):
        if value is MISSING:
            problems.append(_missing(pos, field))
            out.append(False)
        elif isinstance(value, bool):
            out.append(value)
        else:
            problems.append(_bad_type(pos, field, value, "true or false"))
            out.append(False)
    return out, problems
