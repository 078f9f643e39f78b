"""Tabular Q-learning over a discretized observation: the floor every CartPole method is compared with.

Each observation dimension is clipped to [low, high] and cut into equal buckets; the table holds
one row per bucket combination. Same vector envs, schedules, evaluation and metrics as dqn.
"""

import dataclasses
import pickle
import time
from pathlib import Path

import numpy as np
import ray.tune

from trainables import metrics as m
from trainables import runtime, schedules
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.rl import common

# Clip ranges for envs whose observation space is unbounded in some dimension (CartPole's
# velocities are +-inf): cart position, cart velocity, pole angle, pole angular velocity.
KNOWN_BOUNDS = {
    "CartPole-v0": ([-2.4, -3.0, -0.21, -3.5], [2.4, 3.0, 0.21, 3.5]),
    "CartPole-v1": ([-2.4, -3.0, -0.21, -3.5], [2.4, 3.0, 0.21, 3.5]),
}


@dataclasses.dataclass(frozen=True)
class QTableConfig(common.RLConfig):
    buckets: list = dataclasses.field(default_factory=lambda: [3, 3, 8, 8])
    """Buckets per observation dimension; 1 ignores a dimension."""
    obs_low: list = dataclasses.field(default_factory=list)
    """Clip range per dimension, low end; empty: the env's bounds (or KNOWN_BOUNDS for unbounded ones)."""
    obs_high: list = dataclasses.field(default_factory=list)
    """Clip range per dimension, high end."""
    epsilon: dict = dataclasses.field(default_factory=lambda: {"kind": "exp", "start": 1.0, "end": 0.01})
    """Epsilon schedule over epsilon_unit count / epsilon_horizon, then held at its end value."""
    epsilon_unit: str = "episodes"
    """steps or episodes."""
    epsilon_horizon: int = 1000
    """Steps or episodes over which the epsilon schedule runs."""
    # A table update costs microseconds: many more env steps per iteration than dqn.
    steps_per_iteration: int = 20_000
    iterations: int = 15
    lr: float = 0.1  # the step size alpha of the table update, at most 1
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.1})

    def __post_init__(self):
        super().__post_init__()
        check_range(self, "[1, inf)", "epsilon_horizon")
        check_range(self, "(0, 1]", "lr")
        if not self.buckets or any(not isinstance(b, int) or b < 1 for b in self.buckets):
            raise ValueError(f"buckets must be a list of integers >= 1, e.g. [3, 3, 8, 8], got {self.buckets!r}")
        if self.epsilon_unit not in ("steps", "episodes"):
            raise ValueError(f"epsilon_unit must be steps or episodes, got {self.epsilon_unit!r}")
        object.__setattr__(self, "epsilon", schedules.validate(self.epsilon, "epsilon"))


MUTABLE_FIELDS = ("lr", "gamma", "epsilon_horizon")
# A checkpoint's table fits only a trial with the same env and discretization.
ARCHITECTURE_FIELDS = ("env", "buckets")


def bounds(cfg: QTableConfig, obs_space) -> tuple[np.ndarray, np.ndarray]:
    """Clip range per observation dimension; a ConfigError when one would be infinite or empty."""
    dims = obs_space.shape[0]
    if len(cfg.buckets) != dims:
        raise ConfigError(
            f"buckets has {len(cfg.buckets)} entries but {cfg.env} observations have {dims} "
            f"dimensions; give one bucket count per dimension"
        )
    known_low, known_high = KNOWN_BOUNDS.get(cfg.env, (obs_space.low, obs_space.high))
    low = np.asarray(cfg.obs_low or known_low, np.float64)
    high = np.asarray(cfg.obs_high or known_high, np.float64)
    if low.shape != (dims,) or high.shape != (dims,):
        raise ConfigError(f"obs_low and obs_high need {dims} values each for {cfg.env}")
    bad = [i for i in range(dims) if cfg.buckets[i] > 1 and not (np.isfinite(low[i]) and np.isfinite(high[i]))]
    if bad:
        raise ConfigError(
            f"{cfg.env} observation dimension(s) {bad} are unbounded; give clip ranges with "
            f"--set obs_low=[...] --set obs_high=[...] or set their buckets to 1"
        )
    if np.any(high <= low):
        raise ConfigError(f"obs_high must be above obs_low in every dimension, got {low.tolist()} / {high.tolist()}")
    return low, high


def parse(config: dict) -> QTableConfig:
    """The config, validated (the driver's preflight and the trial's setup): a Box/Discrete env,
    finite clip ranges, a table that fits in memory."""
    cfg = from_dict(QTableConfig, config, "qtable")
    obs_space, _ = common.check_discrete_env(cfg.env, "qtable", cfg.env_config)
    common.vectorize_mode(cfg.env, cfg.vectorization)
    bounds(cfg, obs_space)
    states = int(np.prod(cfg.buckets))
    if states > 10_000_000:
        raise ConfigError(f"buckets {cfg.buckets} make a table of {states:,} states; use fewer buckets")
    return cfg


class QTableTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        obs_space, act_space = common.spaces(cfg.env, cfg.env_config)
        self.low, self.high = bounds(cfg, obs_space)
        self.buckets = np.asarray(cfg.buckets)
        self.n_actions = int(act_space.n)
        self.rng = runtime.seed_everything(cfg.seed)
        self.q = np.zeros((int(np.prod(self.buckets)), self.n_actions))  # (states, actions)
        self.rollout = common.Rollout(
            cfg.env, cfg.num_envs, cfg.vectorization, int(self.rng.integers(2**31)), cfg.env_config
        )
        self.updates = 0
        self.evaluation = common.Evaluation(cfg)

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        """(E, obs_dim) observations -> (E,) flat table rows."""
        scaled = (np.clip(obs, self.low, self.high) - self.low) / (self.high - self.low)
        cells = np.minimum((scaled * self.buckets).astype(np.int64), self.buckets - 1)
        return np.ravel_multi_index(cells.T, self.buckets)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.q[self.state_index(obs)].argmax(1)

    def epsilon(self) -> float:
        return common.exploration(self.cfg.epsilon, self.cfg.epsilon_unit, self.cfg.epsilon_horizon, self.rollout)

    def progress(self) -> float:
        """Fraction of training done: what lr_schedule is evaluated on."""
        return self.rollout.env_steps / self.cfg.total_env_steps

    def learning_rate(self) -> float:
        return self.cfg.lr * schedules.value(self.cfg.lr_schedule, self.progress())

    def step(self) -> dict:
        cfg, rollout = self.cfg, self.rollout
        start = time.perf_counter()
        goal = rollout.env_steps + cfg.steps_per_iteration
        state = self.state_index(rollout.obs)
        while rollout.env_steps < goal:
            explore = self.rng.random(cfg.num_envs) < self.epsilon()
            actions = np.where(explore, self.rng.integers(0, self.n_actions, cfg.num_envs), self.q[state].argmax(1))
            t = rollout.step(actions)
            next_state = self.state_index(t.next_obs)
            s, a = state[t.valid], t.action[t.valid]
            target = t.reward[t.valid] + cfg.gamma * (1.0 - t.terminated[t.valid]) * self.q[next_state[t.valid]].max(1)
            # add.at: two envs in the same state and action both count.
            np.add.at(self.q, (s, a), self.learning_rate() * (target - self.q[s, a]))
            self.updates += len(s)
            state = next_state
        result = {
            **rollout.metrics(),
            m.TRAIN_UPDATES: self.updates,
            m.TRAIN_EPSILON: self.epsilon(),
            m.TRAIN_LR: self.learning_rate(),
            m.TRAIN_ENV_STEPS_PER_S: cfg.steps_per_iteration / (time.perf_counter() - start),
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
        }
        return self.evaluation.complete(result, self.greedy, self.iteration, rollout.env_steps)

    def test(self) -> dict:
        """Test figures of the greedy policy on fresh episodes: once, on the selected trial, by the driver."""
        return self.evaluation.test(self.greedy)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        np.save(Path(checkpoint_dir) / "q.npy", self.q)
        with open(Path(checkpoint_dir) / "state.pkl", "wb") as f:
            pickle.dump(
                {
                    "config": to_dict(self.cfg),
                    "updates": self.updates,
                    "evaluation": self.evaluation.state_dict(),
                    "rng": runtime.rng_state(self.rng),
                    "rollout": self.rollout.state_dict(),
                },
                f,
            )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(Path(checkpoint_dir) / "state.pkl", "rb") as f:
            state = pickle.load(f)
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        q = np.load(Path(checkpoint_dir) / "q.npy")
        self.q, self.updates = q, state["updates"]
        self.evaluation.load_state_dict(state["evaluation"])
        fresh_seed = int(self.rng.integers(2**31))  # drawn before the restore, so it does not shift the RNG
        runtime.restore_rng_state(state["rng"], self.rng)
        self.rollout.load_state_dict(state["rollout"], seed=fresh_seed)

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, parse, MUTABLE_FIELDS)

    def cleanup(self) -> None:
        self.rollout.close()
