"""RLlib algorithms as tunelab models: one Tune trainable that builds an RLlib Algorithm (new API
stack) from a frozen settings dataclass, and reports the same metrics as our own models.

Evaluation is ours, not RLlib's: after each evaluated iteration the learner's weights go to the
local env runner and `rl.greedy_returns` plays the deterministic policy on the same episodes (same
seeds) as dqn and qtable, with the env's own reward. Scores are therefore directly comparable.

The trial's CPUs are split by `placement()`: one bundle for the trainable (which runs the learner
and evaluation), one per env runner. RLlib's default of 2 env runners plus a learner would ask
for 3 CPUs and never start on a 2-core machine.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import ray.tune
import torch
from ray.rllib.algorithms import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import DEFAULT_OPTIMIZER, LR_KEY, Learner
from ray.rllib.utils import metrics as rm
from ray.tune import PlacementGroupFactory

from trainables import metrics as m
from trainables import rl, runtime, schedules
from trainables.config import ConfigError, from_dict, to_dict


@dataclasses.dataclass(frozen=True)
class RLlibSettings:
    """What every RLlib baseline shares; each algorithm's module adds its own fields."""

    env: str = "CartPole-v1"
    """A registered gymnasium env id."""
    num_env_runners: int = -1
    """Remote env runners; -1: one per CPU of the trial beyond the first (0 samples in the trial itself)."""
    envs_per_env_runner: int = 4
    """Vectorized envs per env runner."""
    hidden: int = 64
    """Units per hidden layer of the policy/value network."""
    layers: int = 2
    """Hidden layers."""
    lr: float = 3e-4
    """Adam learning rate; lr_schedule multiplies it over training progress."""
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "constant", "start": 1.0})
    """Learning-rate multiplier over training progress (handed to RLlib as a piecewise-linear schedule
    over the env steps of `iterations` iterations)."""
    gamma: float = 0.99
    """Discount."""
    iterations: int = 40
    """RLlib training iterations until the trial is done."""
    eval_every: int = 1
    """Evaluate every this many iterations."""
    eval_episodes: int = 20
    """Greedy episodes per evaluation; their mean return is the score."""
    solve_return: float = float("nan")
    """Mean greedy return that counts as solved; NaN: the env's reward_threshold."""
    stop_on_solve: bool = False
    """End the trial at the first solving evaluation."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many iterations."""
    seed: int = 0
    """Seeds RLlib (env runners, networks)."""

    def __post_init__(self):
        for name, low in [("num_env_runners", -1), ("envs_per_env_runner", 1), ("hidden", 1), ("layers", 1),
                          ("iterations", 1), ("eval_every", 1), ("eval_episodes", 1),
                          ("checkpoint_every", 1)]:
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        object.__setattr__(self, "lr_schedule", schedules.validate(self.lr_schedule, "lr_schedule"))


def piecewise(spec: dict, scale: float, horizon: int, points: int = 11) -> list[list[float]]:
    """A schedule dict as RLlib's [[env_step, value], ...] list (linear in between)."""
    return [[round(horizon * i / (points - 1)), scale * schedules.value(spec, i / (points - 1))]
            for i in range(points)]


def common(config: AlgorithmConfig, s: RLlibSettings) -> AlgorithmConfig:
    """The settings every baseline applies the same way."""
    return (config
            .environment(s.env)
            .framework("torch")
            .env_runners(num_env_runners=s.num_env_runners, num_envs_per_env_runner=s.envs_per_env_runner)
            .rl_module(model_config={"fcnet_hiddens": [s.hidden] * s.layers, "fcnet_activation": "relu"})
            .debugging(seed=s.seed, log_level="ERROR")
            .reporting(metrics_num_episodes_for_smoothing=20))


def placement(num_env_runners: int, gpus: float) -> PlacementGroupFactory:
    """The trial's bundle (learner + evaluation, and its GPU share) plus one CPU per env runner."""
    head = {"CPU": 1, **({"GPU": gpus} if gpus else {})}
    return PlacementGroupFactory([head] + [{"CPU": 1}] * num_env_runners)


def place(config: dict, cpus: float, gpus: float) -> tuple[dict, PlacementGroupFactory]:
    """Sizes the env runners to the trial's CPUs (num_env_runners -1: one per CPU beyond the
    first) and returns (config with the number pinned, the trial's placement group)."""
    requested = config.get("num_env_runners", -1)
    runners = max(0, int(cpus) - 1) if requested < 0 else requested
    return {**config, "num_env_runners": runners}, placement(runners, gpus)


class RLlibTrainable(ray.tune.Trainable):
    """Subclasses set SETTINGS, MODEL and algorithm_config()."""

    SETTINGS: type = RLlibSettings
    MODEL: str = ""

    @staticmethod
    def algorithm_config(s) -> AlgorithmConfig:
        raise NotImplementedError

    def setup(self, config: dict):
        s = self.settings = from_dict(self.SETTINGS, config, self.MODEL)
        if s.num_env_runners < 0:
            raise ConfigError(f"{self.MODEL}: num_env_runners is still -1 (auto) inside the trial; "
                              "start it through python -m platform.tune, which sizes it to the trial's CPUs")
        runtime.seed_everything(s.seed)
        torch.set_num_threads(1)
        config = self.algorithm_config(s)
        gpus = self.trial_resources.required_resources.get("GPU", 0) if self.trial_resources else 0
        if gpus and torch.cuda.is_available():  # the learner runs in this process, on Ray's GPU share
            config = config.learners(num_gpus_per_learner=gpus)
        self.algo = config.build_algo()
        self.clock = rl.SolveClock(rl.solve_threshold(s.env, s.solve_return))
        self.last_eval: dict = {}
        self.baselines = rl.random_baseline(s.env, s.eval_episodes)

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions of the current policy for a batch of observations."""
        module = self.algo.get_module()
        out = module.forward_inference({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)})
        if Columns.ACTIONS in out:
            return out[Columns.ACTIONS].cpu().numpy()
        dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        return dist.to_deterministic().sample().cpu().numpy()

    def step(self) -> dict:
        s = self.settings
        start = time.perf_counter()
        result = self.algo.train()
        train_seconds = time.perf_counter() - start
        runners = result.get(rm.ENV_RUNNER_RESULTS, {})
        env_steps = int(result.get(rm.NUM_ENV_STEPS_SAMPLED_LIFETIME,
                                   runners.get(rm.NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)))
        learner = result.get(rm.LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
        out = {
            m.TRAIN_ENV_STEPS: env_steps,
            m.TRAIN_EPISODES: runners.get(rm.NUM_EPISODES_LIFETIME, float("nan")),
            m.TRAIN_EPISODE_RETURN: float(runners.get(rm.EPISODE_RETURN_MEAN, float("nan"))),
            m.TRAIN_SAMPLES_TRAINED: learner.get(rm.NUM_MODULE_STEPS_TRAINED_LIFETIME, float("nan")),
            m.TRAIN_LOSS: float(learner.get(Learner.TOTAL_LOSS_KEY, float("nan"))),
            m.TRAIN_LR: float(learner.get(f"{DEFAULT_OPTIMIZER}_{LR_KEY}", float("nan"))),
            m.TRAIN_ENV_STEPS_PER_S: runners.get(rm.NUM_ENV_STEPS_SAMPLED, 0) / train_seconds,
            m.TRAIN_PEAK_RSS_MB: rl.peak_rss_mb(),
            **{m.HPARAM_PREFIX + k: v for k, v in to_dict(s).items() if isinstance(v, (int, float))},
            **self.baselines,
        }
        if rl.evaluation_due(s, self.iteration, self.last_eval):
            self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group,
                                                    inference_only=True)
            self.last_eval = rl.greedy_evaluation(self.greedy, s, self.clock, env_steps)
        out.update(self.last_eval)
        out["done"] = rl.iteration_done(s, self.iteration, out)
        return out

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.save_to_path(str(Path(checkpoint_dir) / "algorithm"))
        (Path(checkpoint_dir) / "tunelab.json").write_text(json.dumps(
            {"clock": self.clock.state_dict(), "last_eval": self.last_eval}))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.restore_from_path(str(Path(checkpoint_dir) / "algorithm"))
        state = json.loads((Path(checkpoint_dir) / "tunelab.json").read_text())
        self.clock.load_state_dict(state["clock"])
        self.last_eval = state["last_eval"]

    def reset_config(self, new_config: dict) -> bool:
        # An RLlib Algorithm fixes its config at build time: rebuild it (PBT then restores the
        # checkpoint it is cloning into the new one).
        self.cleanup()
        self.setup(new_config)
        return True

    def cleanup(self) -> None:
        self.algo.stop()


def check(settings_cls: type, config: dict, model: str, discrete_only: bool = False):
    """Driver-side preflight for an RLlib baseline: the settings parse and the env can be made."""
    s = from_dict(settings_cls, config, model)
    if discrete_only:
        rl.check_discrete_env(s.env, model)
    else:
        rl.spaces(s.env)
    return s
