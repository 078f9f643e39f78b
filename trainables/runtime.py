"""Seeding, RNG state for bit-for-bit restores, device choice, torch threads, checkpoint
compatibility and the PBT reset rule: once, for every model."""

import contextlib
import dataclasses
import importlib
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from trainables.config import ConfigError


def seed_everything(seed: int) -> np.random.Generator:
    """Seeds python, numpy's legacy global RNG and torch (CPU and CUDA); returns a numpy Generator.

    Environment RNGs are seeded by the model through `env.reset(seed=...)` with seeds drawn from
    the returned generator, so one integer fixes the whole trial.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(rng: np.random.Generator, generator: torch.Generator | None = None) -> dict:
    """Every RNG a trial draws from, for a checkpoint."""
    state = {
        "python": random.getstate(),
        "numpy_global": np.random.get_state(),
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict, rng: np.random.Generator, generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy_global"])
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None:
        generator.set_state(state["generator"])


def trial_share(trainable) -> tuple[float | None, float | None]:
    """(CPUs, GPUs) Ray gave this trial; (None, None) outside Tune (a trainable built directly)."""
    if not trainable.trial_resources:
        return None, None
    required = trainable.trial_resources.required_resources
    return required.get("CPU", 0.0), required.get("GPU", 0.0)


def choose_device(requested: str = "auto", trial_gpus: float | None = None) -> torch.device:
    """CUDA when the trial was given a GPU share (or, outside Tune, when one is visible); CPU otherwise.

    Ray sets CUDA_VISIBLE_DEVICES to the GPUs it assigned a trial, so "cuda" is the trial's own
    share. It leaves the variable alone for a trial given no GPU, which would then see every GPU
    of its node: such a trial stays on the CPU.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    given = trial_gpus is None or trial_gpus > 0
    if given and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise ValueError("device=cuda but no GPU is visible to this trial; use --gpus-per-trial or device=auto")
    return torch.device("cpu")


def set_torch_threads(threads: int, trial_cpus: float | None) -> int:
    """Sets torch's intra-op threads: `threads` if > 0, else the CPUs Ray gave the trial (at least 1).

    Without this every trial would start one thread per core, and two trials on a 2-core machine
    would fight over the cores.
    """
    count = threads if threads > 0 else max(1, int(trial_cpus or 1))
    torch.set_num_threads(count)
    os.environ["OMP_NUM_THREADS"] = str(count)
    return count


def check_checkpoint(saved: dict, config: Any, fields: tuple[str, ...], where: str) -> None:
    """A checkpoint loads only into a trial whose `fields` (architecture, env) match the config it
    was saved with (`saved`, a dict); otherwise one ConfigError naming the first difference."""
    for name in fields:
        mine = getattr(config, name)
        if name not in saved:  # written by another version of tunelab: its architecture is unknown
            raise ConfigError(f"checkpoint in {where} has no {name} (another tunelab version?); this trial {mine!r}")
        if saved[name] != mine:
            raise ConfigError(f"checkpoint in {where} has {name}={saved[name]!r}, this trial {mine!r}; must match")


def reset_config(trainable, new_config: dict, parse: Callable, mutable: tuple, apply: Callable | None = None) -> bool:
    """The one reset rule for every trainable (Tune reuses actors: reuse_actors=True). Only `mutable`
    fields changed (a PBT mutation): `apply` the new config in place. Anything else changed: the
    actor is starting another trial (another seed, say) and becomes it from scratch; returning
    False instead would make Tune fail the trial."""
    new, old = parse(new_config), trainable.cfg
    # repr: NaN (solve_return's "the env's threshold") equals itself; == would call it a change.
    changed = {f.name for f in dataclasses.fields(new) if repr(getattr(new, f.name)) != repr(getattr(old, f.name))}
    if changed - set(mutable):
        trainable.cleanup()
        trainable.setup(new_config)
        return True
    trainable.cfg = new
    if apply is not None:
        apply(new)
    return True


def standalone(cls: type, config: dict) -> Any:
    """A trainable built outside Tune (test figures, a benchmark, an A/B arm). Without Tune's
    storage, Ray's Trainable makes an empty folder in ~/ray_results for its logs, which tunelab
    never writes to: it is removed at once, so users' result folders hold experiments only."""
    model = cls(config=dict(config))
    with contextlib.suppress(OSError):  # only an empty folder is removed
        os.rmdir(model.logdir)
    return model


def checkpoint_test_figures(trainable: str, config: dict, checkpoint) -> dict:
    """The test figures of a selected trial: the "module:Class" trainable built from its config,
    restored from its checkpoint, then `test()` once (platform/selection.py runs this as a Ray task)."""
    module, _, name = trainable.partition(":")
    model = standalone(getattr(importlib.import_module(module), name), config)
    try:
        model.restore(checkpoint)
        return {k: v if isinstance(v, dict) else float(v) for k, v in model.test().items()}
    finally:
        model.stop()
