"""What the deployment files must agree with: the CLI's parsers and the exposed metric names.

``check_command`` walks ``fraudstream.stream.cli.build_parser()`` down a command's subcommand path
(``serve``, ``features run``) and reports every flag that parser would not accept, every
value outside an option's choices, and every required option left out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

# Prometheus names as exposed (counters with their _total suffix), by type.
SERVE_METRICS = {
    "fraudstream_e2e_latency_seconds": "histogram",
    "fraudstream_stage_latency_seconds": "histogram",
    "fraudstream_batch_size": "histogram",
    "fraudstream_transactions_total": "counter",
    "fraudstream_decisions_total": "counter",
    "fraudstream_degraded_total": "counter",
    "fraudstream_dead_letters_total": "counter",
    "fraudstream_deadline_missed_total": "counter",
    "fraudstream_consumer_lag": "gauge",
    "fraudstream_model_info": "gauge",
    "fraudstream_model_load_errors_total": "counter",
    "fraudstream_dead_letters_truncated_total": "counter",
    "fraudstream_dead_letters_lost_total": "counter",
    "fraudstream_producer_clock_skew_seconds": "gauge",
}
LABEL_METRICS = {
    "fraudstream_labels_applied_total": "counter",
    "fraudstream_labels_dead_letters_total": "counter",
    "fraudstream_kpi_decisions": "gauge",
    "fraudstream_kpi_confirmed_frauds": "gauge",
    "fraudstream_kpi_precision": "gauge",
    "fraudstream_kpi_fraud_amount": "gauge",
    "fraudstream_kpi_decisions_lag": "gauge",
    "fraudstream_labels_last_applied_timestamp_seconds": "gauge",
    "fraudstream_labels_last_applied_age_seconds": "gauge",
    "fraudstream_labels_newest_label_time_seconds": "gauge",
    "fraudstream_labels_silence_seconds": "gauge",
    "fraudstream_labels_stale": "gauge",
    "fraudstream_labels_stale_after_seconds": "gauge",
}
METRICS = SERVE_METRICS | LABEL_METRICS

# Settings read only from the environment, never from a flag.
ENV_ONLY_SECRETS = frozenset({"FRAUDSTREAM_SASL_PASSWORD", "FRAUDSTREAM_SSL_KEY_PASSWORD"})


@dataclass(frozen=True)
class Command:
    """A command line split against the CLI's parser tree."""

    path: tuple[str, ...]
    """Subcommand names, e.g. ``("features", "run")``."""
    parser: argparse.ArgumentParser
    """The parser of the innermost subcommand."""
    args: tuple[str, ...]
    """What follows the subcommand path."""


def subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The parser's subcommand action, or None for a leaf parser."""
    group = parser._subparsers
    if group is None:
        return None
    for action in group._group_actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every option string the parser accepts (``--flag`` and ``-f``), to its action."""
    return {opt: action for action in parser._actions for opt in action.option_strings}


def split_command(root: argparse.ArgumentParser, tokens: Sequence[str]) -> Command:
    """Follow ``tokens`` down the subcommand tree; raise ValueError where a name is unknown."""
    rest = list(tokens)
    if rest and rest[0] == "fraudstream":
        rest.pop(0)
    parser, path = root, []
    while (sub := subparsers_of(parser)) is not None:
        _skip_global_options(parser, rest)
        if not rest or rest[0] not in sub.choices:
            got = rest[0] if rest else "nothing"
            known = ", ".join(sorted(sub.choices))
            msg = f"after {' '.join(['fraudstream', *path])!r}: {got!r} is not one of {known}"
            raise ValueError(msg)
        name = rest.pop(0)
        path.append(name)
        parser = sub.choices[name]
    return Command(tuple(path), parser, tuple(rest))


def _skip_global_options(parser: argparse.ArgumentParser, rest: list[str]) -> None:
    options = options_of(parser)
    while rest and rest[0].split("=", 1)[0] in options:
        action = options[rest.pop(0).split("=", 1)[0]]
        if action.nargs != 0 and rest:
            rest.pop(0)


def check_command(root: argparse.ArgumentParser, tokens: Sequence[str]) -> list[str]:
    """Problems the CLI would have with this command line; empty when it is accepted."""
    try:
        command = split_command(root, tokens)
    except ValueError as exc:
        return [str(exc)]
    where = " ".join(command.path)
    options = options_of(command.parser)
    problems: list[str] = []
    seen: set[argparse.Action] = set()
    args = list(command.args)
    while args:
        token = args.pop(0)
        if not token.startswith("-"):
            problems.append(f"{where}: unexpected argument {token!r}")
            continue
        flag, eq, inline = token.partition("=")
        action = options.get(flag)
        if action is None:
            problems.append(f"{where}: unknown flag {flag}")
            continue
        seen.add(action)
        if action.nargs == 0:
            continue
        value = inline if eq else (args.pop(0) if args else None)
        problems.extend(_value_problems(where, flag, action, value))
    for action in command.parser._actions:
        if action.required and action.option_strings and action not in seen:
            problems.append(f"{where}: required flag {action.option_strings[0]} is missing")
    return problems


def _value_problems(where: str, flag: str, action: argparse.Action, value: str | None) -> list[str]:
    if value is None:
        return [f"{where}: {flag} needs a value"]
    if action.choices is not None and value not in action.choices:
        return [f"{where}: {flag} {value!r} is not one of {sorted(action.choices)}"]
    if action.type in (int, float):
        try:
            action.type(value)
        except ValueError:
            return [f"{where}: {flag} {value!r} is not a valid {action.type.__name__}"]
    return []


def flag_value(tokens: Sequence[str], flag: str) -> str | None:
    """The value given to ``flag`` in a command line (``--f v`` or ``--f=v``), or None."""
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def env_names(root: argparse.ArgumentParser, path: Sequence[str]) -> set[str]:
    """The environment names a subcommand reads: FRAUDSTREAM_ + each flag's dest, upper-cased."""
    command = split_command(root, list(path))
    dests = {a.dest for a in command.parser._actions if a.option_strings and a.dest != "help"}
    return {f"FRAUDSTREAM_{d.upper()}" for d in dests} | ENV_ONLY_SECRETS
