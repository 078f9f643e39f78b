"""Pieces every reinforcement-learning model shares: the base config, environments, greedy
evaluation, the random baseline and the solve clock. Used by dqn, qtable and the RLlib baselines
alike, so their scores are computed the same way on the same episodes.
"""

import dataclasses
import functools
import json
import math
import pickle
import resource
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import numpy as np

import envs
from envs import music
from trainables import metrics as m
from trainables import schedules
from trainables.config import ConfigError, check_range

# Evaluation episodes start from the same seeds in every trial and every model (common random
# numbers): two policies are compared on identical starts.
EVAL_SEED = 1_000_003
TEST_SEED = 2_000_003  # test episodes: never seen by the evaluation the search selects on
VECTORIZATIONS = ("auto", "numpy", "sync")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """The fields every reinforcement-learning model has; each model's config extends it (and may
    change a default by naming the field again)."""

    env: str = "CartPole-v1"
    """A registered gymnasium env id (dqn and qtable: flat Box observation, Discrete actions)."""
    env_config: dict = dataclasses.field(default_factory=dict)
    """Keyword arguments of the env (e.g. --set env_config.datasets=gen-easy,wine for
    tunelab/ActiveLearning-v0); every training, evaluation and test env gets the same."""
    num_envs: int = 8
    """Environments stepped together as one vector env (per env runner for the RLlib baselines)."""
    vectorization: str = "auto"
    """auto (the env's numpy-vectorized version when it has one, else sync), numpy or sync."""
    steps_per_iteration: int = 1_000
    """Env steps per Tune iteration, across all envs."""
    iterations: int = 60
    """Iterations until the trial is done; schedules run over iterations x steps_per_iteration env steps."""
    eval_every: int = 1
    """Evaluate every this many iterations (the last evaluation is reported in between)."""
    eval_episodes: int = 20
    """Greedy episodes per evaluation; their mean return is the score."""
    eval_stop_early: bool = False
    """On envs whose reward per step has a known bound (CartPole), end an evaluation once its mean
    cannot reach the solve return: the score is then the mean return so far, a lower bound (eval/complete
    0). For runs timed to their solve (stop_on_solve); a search selecting on the score wants it off."""
    test_episodes: int = 100
    """Greedy episodes (other seeds than the evaluation's) played once by the selected trial after the search."""
    solve_return: float = float("nan")
    """Mean greedy return that counts as solved; NaN: the env's reward_threshold (475 for CartPole-v1)."""
    stop_on_solve: bool = False
    """End the trial at the first solving evaluation."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many iterations."""
    seed: int = 0
    """Seeds the model, exploration and the training envs."""
    gamma: float = 0.99
    """Discount."""
    lr: float = 3e-4
    """Learning rate (step size); lr_schedule multiplies it over training progress."""
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "constant", "start": 1.0})
    """Learning-rate multiplier over training progress (trainables/schedules.py)."""

    def __post_init__(self):
        check_range(self, "[1, inf)", "num_envs steps_per_iteration iterations eval_every eval_episodes test_episodes")
        check_range(self, "[1, inf)", "checkpoint_every")
        check_range(self, "(0, 1]", "gamma")
        check_range(self, "(0, inf)", "lr")
        object.__setattr__(self, "lr_schedule", schedules.validate(self.lr_schedule, "lr_schedule"))
        if self.vectorization not in VECTORIZATIONS:
            raise ValueError(f"vectorization must be one of {', '.join(VECTORIZATIONS)}, got {self.vectorization!r}")
        if self.env == envs.MUSIC:  # its populations explicit, so every checkpoint records what it trained on
            object.__setattr__(self, "env_config", music.with_populations(self.env_config))

    @property
    def total_env_steps(self) -> int:
        """The horizon every schedule of the model runs over."""
        return self.iterations * self.steps_per_iteration


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, or a ConfigError naming a close match."""
    envs.register()  # tunelab's own envs (tunelab/...), in whichever process asks
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        known = sorted(gym.registry)
        close = [k for k in known if k.lower().startswith(env_id.split("-")[0].lower()[:4])][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry()"
        raise ConfigError(
            f"env {env_id!r} is not a registered gymnasium environment ({type(err).__name__}){hint}"
        ) from None


def spaces(env_id: str, env_config: dict | None = None) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of `env_id` made with `env_config`; ConfigError if it is
    unknown or cannot be made (a missing dependency, a bad env_config)."""
    return _spaces(env_id, json.dumps(env_config or {}, sort_keys=True))


@functools.cache
def _spaces(env_id: str, env_config: str) -> tuple[gym.Space, gym.Space]:
    env_spec(env_id)
    try:
        env = gym.make(env_id, **json.loads(env_config))
    except Exception as err:  # a registered env whose dependencies are missing (box2d, mujoco, ...)
        raise ConfigError(f"env {env_id!r} could not be created: {type(err).__name__}: {err}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    return obs_space, act_space


def check_discrete_env(
    env_id: str, model: str, env_config: dict | None = None
) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """(observation space, action space) of an env with a Box observation and Discrete actions."""
    obs_space, act_space = spaces(env_id, env_config)
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError(
            f"{model} needs discrete actions, but {env_id} has {act_space} "
            f"(continuous); use a Discrete-action env such as CartPole-v1 or Acrobot-v1"
        )
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ConfigError(f"{model} needs a flat Box observation, but {env_id} has {obs_space}")
    return obs_space, act_space


def solve_threshold(env_id: str, configured: float) -> float:
    """The configured solve return, or the env's registered reward_threshold (475 for CartPole-v1)."""
    if not math.isnan(configured):
        return configured
    threshold = env_spec(env_id).reward_threshold
    return float("nan") if threshold is None else float(threshold)


def vectorize_mode(env_id: str, vectorization: str) -> str:
    """gymnasium's vectorization mode for `vectorization`: numpy (the env's own numpy-vectorized
    implementation, which CartPole has; bench/cartpole.py measures it against sync) or sync."""
    if vectorization not in VECTORIZATIONS:
        raise ConfigError(f"vectorization must be one of {', '.join(VECTORIZATIONS)}, got {vectorization!r}")
    has_numpy = env_spec(env_id).vector_entry_point is not None
    if vectorization == "numpy" and not has_numpy:
        raise ConfigError(f"env {env_id} has no numpy-vectorized implementation; use vectorization=sync or auto")
    return "vector_entry_point" if has_numpy and vectorization != "sync" else "sync"


def make_vector_env(
    env_id: str, num_envs: int, vectorization: str = "auto", env_config: dict | None = None
) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` (made with `env_config`) stepped as one, autoresetting on the
    step after an episode ends."""
    mode = vectorize_mode(env_id, vectorization)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **(env_config or {}))


class Transition(NamedTuple):
    """One vector-env step, arrays with a leading env axis (E,)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    done: np.ndarray  # terminated or truncated
    valid: np.ndarray  # False on the step that only resets an env (next-step autoreset)


class Rollout:
    """A vector env with the bookkeeping every model needs: env steps, episodes, training returns.

    Steps that only reset an env (the step after its episode ended) are not counted and are
    marked invalid, so a model never learns from the jump between two episodes.
    """

    def __init__(self, env_id: str, num_envs: int, vectorization: str, seed: int, env_config: dict | None = None):
        self.env = make_vector_env(env_id, num_envs, vectorization, env_config)
        self.num_envs = num_envs
        self.env_steps = self.episodes = 0
        self.finished: list[float] = []  # returns of training episodes since the last metrics()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        obs, _ = self.env.reset(seed=seed)
        self.obs = np.asarray(obs, np.float32)
        self.prev_done = np.zeros(self.num_envs, bool)
        self.episode_return = np.zeros(self.num_envs)

    def step(self, actions: np.ndarray) -> Transition:
        next_obs, reward, terminated, truncated, _ = self.env.step(actions)
        next_obs = np.asarray(next_obs, np.float32)
        done = terminated | truncated
        valid = ~self.prev_done
        self.episode_return += np.where(valid, reward, 0.0)
        finished = done & valid
        if finished.any():
            self.finished.extend(self.episode_return[finished].tolist())
            self.episodes += int(finished.sum())
            self.episode_return[finished] = 0.0
        out = Transition(self.obs, actions, np.asarray(reward, np.float32), next_obs, terminated, done, valid)
        self.obs, self.prev_done = next_obs, done
        self.env_steps += int(valid.sum())
        return out

    def metrics(self) -> dict:
        """Env steps and episodes so far, and the mean return of the training episodes that ended
        since the last call."""
        returns, self.finished = self.finished, []
        return {
            m.TRAIN_ENV_STEPS: self.env_steps,
            m.TRAIN_EPISODES: self.episodes,
            m.TRAIN_EPISODE_RETURN: float(np.mean(returns)) if returns else float("nan"),
        }

    def state_dict(self) -> dict:
        try:  # numpy-vectorized and pure-python envs pickle; one holding a native handle may not
            env = pickle.dumps(self.env)
        except Exception:
            env = None
        return {
            "env": env,
            "obs": self.obs,
            "prev_done": self.prev_done,
            "episode_return": self.episode_return,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict, seed: int) -> bool:
        """Restores counters and, when the env pickled, the episodes in flight; else starts fresh
        episodes from `seed`. Returns whether the episodes in flight were restored."""
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        if state["env"] is None or len(state["obs"]) != self.num_envs:
            self.reset(seed)
            return False
        self.env.close()
        self.env = pickle.loads(state["env"])
        self.obs, self.prev_done, self.episode_return = state["obs"], state["prev_done"], state["episode_return"]
        return True

    def close(self) -> None:
        self.env.close()


def exploration(spec: dict, unit: str, horizon: int, rollout: Rollout) -> float:
    """An epsilon schedule run over `horizon` env steps or episodes (`unit`), then held at its end
    (search_spaces.dqn.epsilon_decay_per_episode writes the research's per-episode decay this way)."""
    count = rollout.env_steps if unit == "steps" else rollout.episodes
    return schedules.value(spec, count / horizon)


def greedy_returns(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    seed: int = EVAL_SEED,
    env_config: dict | None = None,
) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes, one per env of a vector env, with the env's reward.

    `policy` maps a batch of observations (E, obs_dim) to actions (E,). Envs that finished keep
    stepping (the vector env autoresets them) but their later rewards are not counted.
    """
    return greedy_evaluation(policy, env_id, episodes, seed, env_config)[0]


# Envs whose reward per step is bounded above by a known constant: an evaluation on them can stop
# as soon as its mean cannot reach the solve return any more.
MAX_STEP_REWARD = {"CartPole-v0": 1.0, "CartPole-v1": 1.0}


def greedy_evaluation(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    seed: int = EVAL_SEED,
    env_config: dict | None = None,
    stop_below: float = float("nan"),
) -> tuple[np.ndarray, bool]:
    """(returns, complete): greedy_returns, except that on an env of MAX_STEP_REWARD with a time
    limit it stops once even a perfect rest of every running episode would leave the mean below
    `stop_below`; the returns are then those so far (a lower bound) and complete is False."""
    env = make_vector_env(env_id, episodes, env_config=env_config)
    limit = env_spec(env_id).max_episode_steps
    bound = MAX_STEP_REWARD.get(env_id) if limit and not math.isnan(stop_below) else None
    try:
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        steps = 0
        while running.any():
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns += np.where(running, reward, 0.0)
            running &= ~(terminated | truncated)
            steps += 1
            if bound is not None and (returns.sum() + running.sum() * (limit - steps) * bound) < stop_below * episodes:
                return returns, False
        return returns, True
    finally:
        env.close()


def random_policy_returns(
    env_id: str, episodes: int, seed: int = EVAL_SEED, env_config: dict | None = None
) -> np.ndarray:
    """The uniform random policy on the evaluation episodes: the floor every model is compared with."""
    actions = gym.vector.utils.batch_space(spaces(env_id, env_config)[1], episodes)
    actions.seed(seed)
    return greedy_returns(lambda obs: actions.sample(), env_id, episodes, seed, env_config)


def evaluation_metrics(returns: np.ndarray) -> dict:
    return {
        m.SCORE: float(returns.mean()),
        m.EVAL_RETURN_MEAN: float(returns.mean()),
        m.EVAL_RETURN_STD: float(returns.std()),
        m.EVAL_EPISODES: len(returns),
    }


class Evaluation:
    """What every RL model's result must compute the same way: the greedy evaluation (every
    `eval_every` iterations, at the first and the last), the random baseline on the same episodes,
    the solve clock, and when the trial is done."""

    def __init__(self, cfg: RLConfig):
        self.cfg = cfg
        self.clock = SolveClock(solve_threshold(cfg.env, cfg.solve_return))
        self.baselines = random_baseline(cfg.env, cfg.eval_episodes, cfg.env_config)
        self.last: dict = {}  # the latest evaluation, reported again until the next one

    def due(self, iteration: int) -> bool:
        cfg = self.cfg
        return (iteration + 1) % cfg.eval_every == 0 or iteration + 1 >= cfg.iterations or not self.last

    def complete(self, result: dict, policy: Callable[[np.ndarray], np.ndarray], iteration: int, env_steps: int):
        """`result` with the baselines, the latest evaluation (run now if due) and `done`."""
        if self.due(iteration):
            tick = time.perf_counter()
            cfg = self.cfg
            stop = self.clock.threshold if cfg.eval_stop_early else float("nan")
            returns, complete = greedy_evaluation(policy, cfg.env, cfg.eval_episodes, EVAL_SEED, cfg.env_config, stop)
            self.last = {
                **evaluation_metrics(returns),
                m.EVAL_COMPLETE: float(complete),
                m.EVAL_SECONDS: time.perf_counter() - tick,
                **self.clock.record(float(returns.mean()), env_steps),
            }
        out = {**result, **self.baselines, **self.last}
        out["done"] = iteration + 1 >= self.cfg.iterations or bool(self.cfg.stop_on_solve and out[m.SOLVED] > 0)
        return out

    def test(self, policy: Callable[[np.ndarray], np.ndarray]) -> dict:
        """Test figures of `policy` and of the random policy on the same test episodes: run once, on
        the selected trial, by the driver (platform/selection.py)."""
        episodes = self.cfg.test_episodes
        returns = greedy_returns(policy, self.cfg.env, episodes, TEST_SEED, self.cfg.env_config)
        floor = random_policy_returns(self.cfg.env, episodes, TEST_SEED, self.cfg.env_config)
        return {
            m.split_metric(m.TEST, m.RETURN_MEAN): float(returns.mean()),
            m.split_metric(m.TEST, m.RETURN_STD): float(returns.std()),
            m.split_metric(m.TEST, m.EPISODES): float(episodes),
            m.TEST_SOLVED: float(returns.mean() >= self.clock.threshold),
            m.baseline_metric(m.BASELINE_RANDOM, m.split_metric(m.TEST, m.RETURN_MEAN)): float(floor.mean()),
        }

    def state_dict(self) -> dict:
        return {"clock": self.clock.state_dict(), "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.clock.load_state_dict(state["clock"])
        self.last = state["last"]


def random_baseline(env_id: str, episodes: int, env_config: dict | None = None) -> dict:
    returns = random_policy_returns(env_id, episodes, EVAL_SEED, env_config)
    return {m.baseline_metric(m.BASELINE_RANDOM, m.SCORE): float(returns.mean())}


class SolveClock:
    """Env steps and wall seconds until the first evaluation at or above the solve threshold.

    Seconds count everything the trial did (setup, training, evaluation) and survive checkpoints.
    """

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # from a restored checkpoint
        self.env_steps = float("nan")
        self.seconds = float("nan")

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def record(self, mean_return: float, env_steps: int) -> dict:
        if math.isnan(self.env_steps) and mean_return >= self.threshold:
            self.env_steps, self.seconds = float(env_steps), self.elapsed()
        return {
            m.SOLVED: float(not math.isnan(self.env_steps)),
            m.SOLVE_ENV_STEPS: self.env_steps,
            m.SOLVE_SECONDS: self.seconds,
        }

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed(), "env_steps": self.env_steps, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.seconds_before, self.started = state["elapsed"], time.perf_counter()
        self.env_steps, self.seconds = state["env_steps"], state["seconds"]


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
