"""Schedules for every model: learning rate, epsilon, noise, temperature, entropy.

A schedule is a small dict, `{"kind": ..., "start": ..., "end": ..., "warmup": ...}`, evaluated on
training progress in [0, 1]. `warmup` is the fraction of training spent ramping linearly from 0 to
`start`; the schedule's own shape covers the rest. Extra keys per kind:
  exp:  start * (end / start) ** progress;
  step: "every" (fraction of progress between drops) and "factor" (multiplier per drop).
"""

import math
from typing import Any

KINDS = ("constant", "linear", "exp", "cosine", "step")
_KEYS = {
    "constant": {"start"},
    "linear": {"start", "end"},
    "exp": {"start", "end"},
    "cosine": {"start", "end"},
    "step": {"start", "every", "factor"},
}
_OPTIONAL = {"kind", "warmup", "end"}


class ScheduleError(ValueError):
    """A schedule dict that cannot be evaluated; the message names the field and the fix."""


def validate(spec: Any, name: str = "schedule") -> dict:
    """Returns a normalized copy of `spec` or raises ScheduleError naming what is wrong."""
    if not isinstance(spec, dict):
        raise ScheduleError(f"{name} must be a dict like {{'kind': 'cosine', 'start': 1.0, 'end': 0.1}}, got {spec!r}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ScheduleError(f"{name}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = _KEYS[kind] | _OPTIONAL
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ScheduleError(
            f"{name} of kind {kind!r} has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(_KEYS[kind] - set(spec) - ({"end"} if kind == "step" else set()))
    if missing:
        raise ScheduleError(f"{name} of kind {kind!r} needs {missing[0]!r}")
    out = {"kind": kind, "warmup": 0.0}
    for key, value in spec.items():
        if key == "kind":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ScheduleError(f"{name}.{key} must be a finite number, got {value!r}")
        out[key] = float(value)
    if not 0.0 <= out["warmup"] < 1.0:
        raise ScheduleError(f"{name}.warmup is a fraction of training in [0, 1), got {out['warmup']}")
    if kind == "exp" and (out["start"] <= 0 or out["end"] <= 0):
        raise ScheduleError(f"{name}: an exp schedule needs start > 0 and end > 0")
    if kind == "step" and not (0 < out["every"] <= 1 and out["factor"] > 0):
        raise ScheduleError(f"{name}: a step schedule needs 0 < every <= 1 and factor > 0")
    return out


def value(spec: dict, progress: float) -> float:
    """The schedule's value at `progress` (fraction of training done, clipped to [0, 1])."""
    p = min(max(float(progress), 0.0), 1.0)
    kind, start, warmup = spec["kind"], spec["start"], spec.get("warmup", 0.0)
    if p < warmup:
        return start * p / warmup
    # Progress through the schedule's own shape, after warmup.
    t = (p - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    if kind == "constant":
        return start
    if kind == "step":
        return start * spec["factor"] ** math.floor(t / spec["every"] + 1e-9)
    end = spec["end"]
    if kind == "linear":
        return start + (end - start) * t
    if kind == "exp":
        return start * (end / start) ** t
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))  # cosine
