"""Config enters once: a flat dict from Tune becomes one frozen dataclass, unknown keys rejected.

The same field types drive `--set key=value` parsing on the driver, so a typo or a bad value is
a one-line error before any trial starts.
"""

import dataclasses
import difflib
import json
import math
import re
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it and says what would work."""


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def unknown_key(key: str, cls: type, model: str) -> str:
    """The message for a key `cls` does not have, with the closest valid key when there is one."""
    keys = sorted(field_types(cls))
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r} for model {model!r}{hint}; valid keys: {', '.join(keys)}"


def from_dict(cls: type[T], values: dict, model: str) -> T:
    """Builds `cls` from `values`; an unknown key or a badly typed value raises ConfigError."""
    types = field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(unknown_key(unknown[0], cls, model))
    kwargs = {key: _check_type(key, types[key], value) for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{model}: {err}") from None


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def parse_assignment(cls: type, text: str, model: str) -> tuple[str, Any]:
    """Parses one `--set key=value` (or `key.sub=value` for a dict field) into a typed pair."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set lr=3e-4")
    key, raw = (part.strip() for part in text.split("=", 1))
    root, _, sub = key.partition(".")
    types = field_types(cls)
    if root not in types:
        raise ConfigError(f"--set {text!r}: {unknown_key(root, cls, model)}")
    if sub:
        if types[root] is not dict:
            raise ConfigError(f"--set {text!r}: {root!r} is not a dict field, write --set {root}=VALUE")
        return key, _parse_scalar(raw)
    return root, _check_type(root, types[root], _parse_text(root, types[root], raw))


def apply_assignments(values: dict, assignments: list[tuple[str, Any]]) -> dict:
    """Applies parsed `--set` pairs to a config dict; dotted keys update one entry of a dict field."""
    out = dict(values)
    for key, value in assignments:
        root, _, sub = key.partition(".")
        if sub:
            out[root] = {**out.get(root, {}), sub: value}
        else:
            out[root] = value
    return out


def check_range(config: Any, interval: str, names: str) -> None:
    """Each field of `config` named in `names` (space-separated) must lie in `interval`, written as in
    mathematics: "[1, inf)", "(0, 1]", "[0, 1)". Raises ValueError naming the first field outside it."""
    match = re.fullmatch(r"([\[(])\s*(-?[\w.]+)\s*,\s*(-?[\w.]+)\s*([\])])", interval)
    if not match:
        raise ValueError(f"interval {interval!r} is not written like [1, inf) or (0, 1]")
    left, low, high, right = match.group(1), float(match.group(2)), float(match.group(3)), match.group(4)
    if math.isinf(high):
        text = f">= {low:g}" if left == "[" else f"> {low:g}"
    else:
        text = f"in {interval}"
    for name in names.split():
        value = getattr(config, name)
        above = value >= low if left == "[" else value > low
        below = value <= high if right == "]" else value < high
        if not (above and below):
            raise ValueError(f"{name} must be {text}, got {value}")


def _parse_scalar(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _parse_text(key: str, kind: Any, raw: str) -> Any:
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config key {key!r} is a bool, got {raw!r}; use true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"config key {key!r} is an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"config key {key!r} is a number, got {raw!r}") from None
    if kind is list:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"config key {key!r} is a list: write JSON, e.g. --set '{key}=[3, 3, 8, 8]'") from None
    if kind is dict:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(
                f'config key {key!r} is a dict: write JSON, e.g. --set \'{key}={{"kind": "cosine", ...}}\''
                f", or one entry with --set {key}.start=0.5"
            ) from None
        return parsed
    return raw


def _check_type(key: str, kind: Any, value: Any) -> Any:
    """Accepts what Tune and Optuna hand over (numpy scalars, ints for floats) in the field's type."""
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and hasattr(value, "__index__") and not isinstance(value, bool):
        return int(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is dict and isinstance(value, dict):
        return dict(value)
    if kind is list and isinstance(value, (list, tuple)):
        return [v.item() if hasattr(v, "item") else v for v in value]
    if hasattr(value, "item") and kind in (int, float, bool):  # numpy scalar
        return _check_type(key, kind, value.item())
    raise ConfigError(f"config key {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
