"""RLlib algorithms as tunelab models: one Tune trainable that builds an RLlib Algorithm (new API
stack) from a frozen config dataclass, and reports the same metrics as our own models.

Evaluation is ours, not RLlib's: after each evaluated iteration the learner's weights go to the
local env runner and `common.greedy_returns` plays the deterministic policy on the same episodes (same
seeds) as dqn and qtable, with the env's own reward. Scores are therefore directly comparable.

The trial's CPUs are split by `place()`: one bundle for the trainable (which runs the learner
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
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils import metrics as rm
from ray.tune import PlacementGroupFactory

import envs
from trainables import metrics as m
from trainables import runtime, schedules
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.rl import common


@dataclasses.dataclass(frozen=True)
class RLlibConfig(common.RLConfig):
    """What every RLlib baseline has beyond the RL fields; each algorithm's module adds its own."""

    num_env_runners: int = -1
    """Remote env runners; -1: one per CPU of the trial beyond the first (0 samples in the trial itself)."""
    hidden: int = 64
    """Units per hidden layer of the policy/value network."""
    layers: int = 2
    """Hidden layers."""
    activation: str = "relu"
    """Hidden-layer activation: relu or tanh."""
    # RLlib steps its envs through gymnasium's SyncVectorEnv unless told otherwise.
    num_envs: int = 4
    vectorization: str = "sync"
    iterations: int = 40

    def __post_init__(self):
        super().__post_init__()
        check_range(self, "[-1, inf)", "num_env_runners")
        check_range(self, "[1, inf)", "hidden layers")
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be relu or tanh, got {self.activation!r}")


# A checkpoint restores only into an algorithm with the same env and network.
ARCHITECTURE_FIELDS = ("env", "env_config", "hidden", "layers", "activation")


def piecewise(spec: dict, scale: float, horizon: int, points: int = 11) -> list[list[float]]:
    """A schedule dict as RLlib's [[env_step, value], ...] list (linear in between)."""
    return [[round(horizon * i / (points - 1)), scale * schedules.value(spec, i / (points - 1))] for i in range(points)]


def with_shared_settings(algorithm: AlgorithmConfig, cfg: RLlibConfig) -> AlgorithmConfig:
    """RLlib's config with the settings every baseline applies the same way."""
    own = envs.env_class(cfg.env)  # tunelab's envs go to RLlib as classes, stepped by gymnasium's sync vector env
    return (
        algorithm.environment(own or cfg.env, env_config=dict(cfg.env_config))
        .framework("torch")
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.num_envs,
            gym_env_vectorize_mode="sync" if own else common.vectorize_mode(cfg.env, cfg.vectorization),
        )
        .rl_module(model_config={"fcnet_hiddens": [cfg.hidden] * cfg.layers, "fcnet_activation": cfg.activation})
        .debugging(seed=cfg.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=20)
    )


def place(cfg: RLlibConfig, cpus: float, gpus: float) -> tuple[dict, PlacementGroupFactory]:
    """Sizes the env runners to the trial's CPUs (num_env_runners -1: one per CPU beyond the first).
    Returns the config values to pin and the trial's placement group: one bundle for the learner and
    evaluation (with the trial's GPU share), one CPU per env runner."""
    runners = max(0, int(cpus) - 1) if cfg.num_env_runners < 0 else cfg.num_env_runners
    head = {"CPU": 1, **({"GPU": gpus} if gpus else {})}
    return {"num_env_runners": runners}, PlacementGroupFactory([head] + [{"CPU": 1}] * runners)


class RLlibTrainable(ray.tune.Trainable):
    """Each baseline subclasses this once, naming its config parser and its RLlib AlgorithmConfig."""

    @staticmethod
    def parse(config: dict) -> RLlibConfig:
        raise NotImplementedError

    @staticmethod
    def algorithm_config(cfg: RLlibConfig) -> AlgorithmConfig:
        raise NotImplementedError

    def setup(self, config: dict):
        cfg = self.cfg = self.parse(config)
        if cfg.num_env_runners < 0:
            raise ConfigError(
                "num_env_runners is still -1 (auto) inside the trial; start it through "
                "python -m platform.tune, which sizes it to the trial's CPUs"
            )
        runtime.seed_everything(cfg.seed)
        torch.set_num_threads(1)
        algorithm = self.algorithm_config(cfg)
        _, gpus = runtime.trial_share(self)
        if gpus and torch.cuda.is_available():  # the learner runs in this process, on Ray's GPU share
            algorithm = algorithm.learners(num_gpus_per_learner=gpus)
        self.algo = algorithm.build_algo()
        self.evaluation = common.Evaluation(cfg)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions of the current policy for a batch of observations."""
        return greedy_actions(self.algo.get_module(), obs)

    def step(self) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        result = self.algo.train()
        train_seconds = time.perf_counter() - start
        runners = result.get(rm.ENV_RUNNER_RESULTS, {})
        env_steps = int(
            result.get(rm.NUM_ENV_STEPS_SAMPLED_LIFETIME, runners.get(rm.NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        )
        learner = result.get(rm.LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
        out = {
            m.TRAIN_ENV_STEPS: env_steps,
            m.TRAIN_EPISODES: runners.get(rm.NUM_EPISODES_LIFETIME, float("nan")),
            m.TRAIN_EPISODE_RETURN: float(runners.get(rm.EPISODE_RETURN_MEAN, float("nan"))),
            m.TRAIN_SAMPLES_TRAINED: learner.get(rm.NUM_MODULE_STEPS_TRAINED_LIFETIME, float("nan")),
            m.TRAIN_LOSS: float(learner.get(Learner.TOTAL_LOSS_KEY, float("nan"))),
            m.TRAIN_LR: float(learner.get(f"{DEFAULT_OPTIMIZER}_{LR_KEY}", float("nan"))),
            m.TRAIN_ENV_STEPS_PER_S: runners.get(rm.NUM_ENV_STEPS_SAMPLED, 0) / train_seconds,
            m.TRAIN_PEAK_RSS_MB: common.peak_rss_mb(),
            **{m.HPARAM_PREFIX + k: v for k, v in to_dict(cfg).items() if isinstance(v, (int, float))},
        }
        if self.evaluation.due(self.iteration):  # evaluate the learner's current weights
            self.algo.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.algo.learner_group, inference_only=True
            )
        return self.evaluation.complete(out, self.greedy, self.iteration, env_steps)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.save_to_path(str(Path(checkpoint_dir) / "algorithm"))
        (Path(checkpoint_dir) / "tunelab.json").write_text(
            json.dumps({"config": to_dict(self.cfg), "evaluation": self.evaluation.state_dict()})
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = json.loads((Path(checkpoint_dir) / "tunelab.json").read_text())
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        self.algo.restore_from_path(str(Path(checkpoint_dir) / "algorithm"))
        self.evaluation.load_state_dict(state["evaluation"])

    def reset_config(self, new_config: dict) -> bool:
        # An RLlib Algorithm fixes its config at build time: nothing is mutable in place, so it is
        # rebuilt (PBT then restores the checkpoint it is cloning into the new one).
        return runtime.reset_config(self, new_config, self.parse, ())

    def cleanup(self) -> None:
        self.algo.stop()


@torch.no_grad()
def greedy_actions(module: RLModule, obs: np.ndarray) -> np.ndarray:
    """Deterministic actions (B,) of an RL module for observations (B, obs_dim)."""
    out = module.forward_inference({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)})
    if Columns.ACTIONS in out:
        return out[Columns.ACTIONS].cpu().numpy()
    dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    return dist.to_deterministic().sample().cpu().numpy()


def module_from_checkpoint(checkpoint: str) -> RLModule:
    """The policy's RL module from one of RLlibTrainable's checkpoint folders (no Algorithm, no Ray:
    acting needs neither)."""
    path = Path(checkpoint) / "algorithm" / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID
    return RLModule.from_checkpoint(str(path)).eval()


def parse_config(config_cls: type, config: dict, model: str, discrete_only: bool = False):
    """An RLlib baseline's config, validated (the driver's preflight and the trial's setup): the
    fields parse, the env can be made and vectorized as asked."""
    cfg = from_dict(config_cls, config, model)
    if discrete_only:
        common.check_discrete_env(cfg.env, model, cfg.env_config)
    else:
        common.spaces(cfg.env, cfg.env_config)
    common.vectorize_mode(cfg.env, cfg.vectorization)
    return cfg
