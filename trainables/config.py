"""Config enters once: a flat dict from Tune becomes one frozen dataclass, unknown keys rejected.

The same field types drive `--set key=value` parsing on the driver, so a typo or a bad value is
a one-line error before any trial starts.
"""

import json
from typing import Any

from envs.config import ConfigError, check_range, check_type, field_types, from_dict, to_dict, unknown_key

__all__ = ["ConfigError", "apply_assignments", "check_range", "field_types", "from_dict", "parse_assignment", "to_dict"]


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
    return root, check_type(root, types[root], _parse_text(root, types[root], raw))


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
