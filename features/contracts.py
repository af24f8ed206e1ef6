"""The published JSON Schemas (``features/schemas/*.schema.json``) and validators for them.

Producers validate against these files; ``tests`` check that the decoders agree with them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMA_NAMES = ("transaction", "label", "decision")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (one of ``SCHEMA_NAMES``)."""
    if name not in SCHEMA_NAMES:
        msg = f"no schema {name!r}; known: {', '.join(SCHEMA_NAMES)}"
        raise KeyError(msg)
    text = (
        resources.files("fraudstream.features")
        .joinpath("schemas", f"{name}.schema.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _registry() -> Registry[Any]:
    resources_ = [
        (load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in SCHEMA_NAMES
    ]
    return Registry().with_resources(resources_)


def validator(name: str) -> Any:
    """A draft 2020-12 validator for schema ``name`` that resolves the cross-file refs."""
    return jsonschema.Draft202012Validator(load_schema(name), registry=_registry())


def schema_errors(name: str, doc: object) -> list[str]:
    """Every way ``doc`` violates schema ``name`` (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator(name).iter_errors(doc)
    ]
