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
from trainables import rl, runtime, schedules
from trainables.config import ConfigError, from_dict, to_dict

# Clip ranges for envs whose observation space is unbounded in some dimension (CartPole's
# velocities are +-inf): cart position, cart velocity, pole angle, pole angular velocity.
KNOWN_BOUNDS = {
    "CartPole-v0": ([-2.4, -3.0, -0.21, -3.5], [2.4, 3.0, 0.21, 3.5]),
    "CartPole-v1": ([-2.4, -3.0, -0.21, -3.5], [2.4, 3.0, 0.21, 3.5]),
}


@dataclasses.dataclass(frozen=True)
class QTableConfig:
    env: str = "CartPole-v1"
    """Any gymnasium env with a flat Box observation and Discrete actions."""
    num_envs: int = 8
    """Environments stepped together."""
    vectorization: str = "auto"
    """auto, numpy or sync (see trainables/rl.py)."""
    buckets: list = dataclasses.field(default_factory=lambda: [3, 3, 8, 8])
    """Buckets per observation dimension; 1 ignores a dimension."""
    obs_low: list = dataclasses.field(default_factory=list)
    """Clip range per dimension, low end; empty: the env's bounds (or KNOWN_BOUNDS for unbounded ones)."""
    obs_high: list = dataclasses.field(default_factory=list)
    """Clip range per dimension, high end."""
    gamma: float = 0.99
    """Discount."""
    lr: float = 0.1
    """Step size alpha; lr_schedule multiplies it over training progress."""
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.1})
    """Step-size multiplier over training progress."""
    epsilon: dict = dataclasses.field(default_factory=lambda: {"kind": "exp", "start": 1.0, "end": 0.01})
    """Epsilon schedule over epsilon_unit count / epsilon_horizon, then held at its end value."""
    epsilon_unit: str = "episodes"
    """steps or episodes."""
    epsilon_horizon: int = 1000
    """Steps or episodes over which the epsilon schedule runs."""
    steps_per_iteration: int = 20_000
    """Env steps per Tune iteration, across all envs."""
    iterations: int = 15
    """Iterations until the trial is done."""
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
    """Seeds exploration and the training envs."""

    def __post_init__(self):
        for name, low in [("num_envs", 1), ("epsilon_horizon", 1), ("steps_per_iteration", 1), ("iterations", 1),
                          ("eval_every", 1), ("eval_episodes", 1), ("checkpoint_every", 1)]:
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not self.buckets or any(not isinstance(b, int) or b < 1 for b in self.buckets):
            raise ValueError(f"buckets must be a list of integers >= 1, e.g. [3, 3, 8, 8], got {self.buckets!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.lr <= 1.0:
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if self.epsilon_unit not in ("steps", "episodes"):
            raise ValueError(f"epsilon_unit must be steps or episodes, got {self.epsilon_unit!r}")
        for name in ("lr_schedule", "epsilon"):
            object.__setattr__(self, name, schedules.validate(getattr(self, name), name))


MUTABLE_FIELDS = ("lr", "gamma", "epsilon_horizon")


def bounds(cfg: QTableConfig, obs_space) -> tuple[np.ndarray, np.ndarray]:
    """Clip range per observation dimension; a ConfigError when one would be infinite or empty."""
    dims = obs_space.shape[0]
    if len(cfg.buckets) != dims:
        raise ConfigError(f"buckets has {len(cfg.buckets)} entries but {cfg.env} observations have {dims} "
                          f"dimensions; give one bucket count per dimension")
    known_low, known_high = KNOWN_BOUNDS.get(cfg.env, (obs_space.low, obs_space.high))
    low = np.asarray(cfg.obs_low or known_low, np.float64)
    high = np.asarray(cfg.obs_high or known_high, np.float64)
    if low.shape != (dims,) or high.shape != (dims,):
        raise ConfigError(f"obs_low and obs_high need {dims} values each for {cfg.env}")
    bad = [i for i in range(dims) if cfg.buckets[i] > 1 and not (np.isfinite(low[i]) and np.isfinite(high[i]))]
    if bad:
        raise ConfigError(f"{cfg.env} observation dimension(s) {bad} are unbounded; give clip ranges with "
                          f"--set obs_low=[...] --set obs_high=[...] or set their buckets to 1")
    if np.any(high <= low):
        raise ConfigError(f"obs_high must be above obs_low in every dimension, got {low.tolist()} / {high.tolist()}")
    return low, high


def check(config: dict) -> QTableConfig:
    cfg = from_dict(QTableConfig, config, "qtable")
    obs_space, _ = rl.check_discrete_env(cfg.env, "qtable")
    bounds(cfg, obs_space)
    states = int(np.prod(cfg.buckets))
    if states > 10_000_000:
        raise ConfigError(f"buckets {cfg.buckets} make a table of {states:,} states; use fewer buckets")
    return cfg


class QTableTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = from_dict(QTableConfig, config, "qtable")
        obs_space, act_space = rl.check_discrete_env(cfg.env, "qtable")
        self.low, self.high = bounds(cfg, obs_space)
        self.buckets = np.asarray(cfg.buckets)
        self.n_actions = int(act_space.n)
        self.rng = runtime.seed_everything(cfg.seed)
        self.q = np.zeros((int(np.prod(self.buckets)), self.n_actions))  # (states, actions)
        self.rollout = rl.Rollout(cfg.env, cfg.num_envs, cfg.vectorization, seed=int(self.rng.integers(2**31)))
        self.updates = 0
        self.last_eval: dict = {}
        self.clock = rl.SolveClock(rl.solve_threshold(cfg.env, cfg.solve_return))
        self.baselines = rl.random_baseline(cfg.env, cfg.eval_episodes)

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        """(E, obs_dim) observations -> (E,) flat table rows."""
        scaled = (np.clip(obs, self.low, self.high) - self.low) / (self.high - self.low)
        cells = np.minimum((scaled * self.buckets).astype(np.int64), self.buckets - 1)
        return np.ravel_multi_index(cells.T, self.buckets)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.q[self.state_index(obs)].argmax(1)

    def epsilon(self) -> float:
        return rl.exploration(self.cfg.epsilon, self.cfg.epsilon_unit, self.cfg.epsilon_horizon, self.rollout)

    def alpha(self) -> float:
        total = self.cfg.iterations * self.cfg.steps_per_iteration
        return self.cfg.lr * schedules.value(self.cfg.lr_schedule, self.rollout.env_steps / total)

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
            np.add.at(self.q, (s, a), self.alpha() * (target - self.q[s, a]))
            self.updates += len(s)
            state = next_state
        returns = rollout.pop_returns()
        result = {
            m.TRAIN_ENV_STEPS: rollout.env_steps,
            m.TRAIN_EPISODES: rollout.episodes,
            m.TRAIN_UPDATES: self.updates,
            m.TRAIN_EPSILON: self.epsilon(),
            m.TRAIN_LR: self.alpha(),
            m.TRAIN_EPISODE_RETURN: float(np.mean(returns)) if returns else float("nan"),
            m.TRAIN_ENV_STEPS_PER_S: cfg.steps_per_iteration / (time.perf_counter() - start),
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
            **self.baselines,
        }
        if rl.evaluation_due(cfg, self.iteration, self.last_eval):
            self.last_eval = rl.greedy_evaluation(self.greedy, cfg, self.clock, rollout.env_steps)
        result.update(self.last_eval)
        result["done"] = rl.iteration_done(cfg, self.iteration, result)
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        np.save(Path(checkpoint_dir) / "q.npy", self.q)
        with open(Path(checkpoint_dir) / "state.pkl", "wb") as f:
            pickle.dump({"config": to_dict(self.cfg), "updates": self.updates, "clock": self.clock.state_dict(),
                         "last_eval": self.last_eval, "rng": runtime.rng_state(self.rng),
                         "rollout": self.rollout.state_dict()}, f)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        q = np.load(Path(checkpoint_dir) / "q.npy")
        if q.shape != self.q.shape:
            raise ConfigError(f"checkpoint in {checkpoint_dir} has a {q.shape} table, this trial {self.q.shape}; "
                              "env and buckets must match")
        with open(Path(checkpoint_dir) / "state.pkl", "rb") as f:
            state = pickle.load(f)
        self.q, self.updates, self.last_eval = q, state["updates"], state["last_eval"]
        self.clock.load_state_dict(state["clock"])
        fresh_seed = int(self.rng.integers(2**31))  # drawn before the restore, so it does not shift the RNG
        runtime.restore_rng_state(state["rng"], self.rng)
        self.rollout.load_state_dict(state["rollout"], seed=fresh_seed)

    def reset_config(self, new_config: dict) -> bool:
        new = from_dict(QTableConfig, new_config, "qtable")
        fixed = [f.name for f in dataclasses.fields(QTableConfig) if f.name not in MUTABLE_FIELDS]
        if any(getattr(new, name) != getattr(self.cfg, name) for name in fixed):
            self.cleanup()
            self.setup(new_config)
            return True
        self.cfg = new
        return True

    def cleanup(self) -> None:
        self.rollout.close()
