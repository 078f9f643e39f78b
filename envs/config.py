"""Config dataclasses from plain dicts, every floor's one implementation: unknown keys and badly
typed values are a ConfigError naming the key, ranges are checked in one place.

It lives in `envs/`, the lowest floor, because the environments validate their `env_config` with
it and import nothing of the project above them; `trainables.config` builds the `--set` parsing on
top of it.
"""

import dataclasses
import difflib
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
    kwargs = {key: check_type(key, types[key], value) for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{model}: {err}") from None


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


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


def check_type(key: str, kind: Any, value: Any) -> Any:
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
        return check_type(key, kind, value.item())
    raise ConfigError(f"config key {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
