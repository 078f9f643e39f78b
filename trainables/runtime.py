"""Seeding, RNG state for bit-for-bit restores, device choice and torch threads: once, for every model."""

import os
import random

import numpy as np
import torch


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
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when Ray gave the trial a GPU (or `requested` says so), CPU otherwise.

    Ray sets CUDA_VISIBLE_DEVICES to the GPUs assigned to the trial, so "cuda" is always the
    trial's own share of a GPU.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise ValueError("device=cuda but no GPU is visible to this trial; "
                         "ask for one with --gpus-per-trial or use device=auto")
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
