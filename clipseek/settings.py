"""Settings as data: each service declares a dataclass of typed fields with defaults (the one
place its defaults live); a value given explicitly (``flow.yml`` ``uses_with``, keyword
arguments) wins over the environment variable ``CLIPSEEK_<FIELD>``, which wins over the default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

ENV_PREFIX = "CLIPSEEK_"
T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_name(field_name: str) -> str:
    """The environment variable that overrides a settings field."""
    return ENV_PREFIX + field_name.upper()


def _parse(raw: Any, annotation: Any, name: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "none", "null"}):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse(raw, inner[0], name)
    if origin in (list, tuple):
        if isinstance(raw, str):
            # os.pathsep (":") separates paths; commas are accepted too.
            parts = [p.strip() for chunk in raw.split(os.pathsep) for p in chunk.split(",")]
            raw = [p for p in parts if p]
        item_type = args[0] if args else str
        return [_parse(item, item_type, name) for item in raw]
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    if annotation in (int, float, str):
        try:
            return annotation(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {annotation.__name__}, got {raw!r}") from None
    return raw


def load_settings(cls: type[T], overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> T:
    """Build the settings dataclass ``cls``: explicit overrides (not None) > environment > defaults.

    Unknown keys in ``overrides`` raise, so a typo in ``flow.yml`` is not silently ignored.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if overrides.get(field.name) is not None:
            raw, source = overrides[field.name], field.name
        elif env_name(field.name) in environ:
            raw, source = environ[env_name(field.name)], env_name(field.name)
        else:
            continue
        values[field.name] = _parse(raw, hints[field.name], source)
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, Any]]:
    """(environment variable, type, default) for each field: what the README documents."""
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        rows.append((env_name(field.name), getattr(hints[field.name], "__name__", str(hints[field.name])), default))
    return rows
