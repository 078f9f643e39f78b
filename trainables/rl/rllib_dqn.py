"""RLlib DQN (new API stack) as a tunelab model: the off-policy library baseline for our own dqn."""

import dataclasses

from ray.rllib.algorithms.dqn import DQNConfig as DQNAlgorithmConfig

from trainables import schedules
from trainables.config import check_range
from trainables.rl.rllib import RLlibConfig, RLlibTrainable, parse_config, piecewise, with_shared_settings


@dataclasses.dataclass(frozen=True)
class RLlibDQNConfig(RLlibConfig):
    batch_size: int = 32
    """Transitions per gradient update."""
    buffer_size: int = 50_000
    """Replay capacity in env steps."""
    prioritized: bool = True
    """RLlib's PrioritizedEpisodeReplayBuffer (alpha 0.6, beta 0.4) instead of the uniform one."""
    n_step: int = 3
    """Steps summed into each return."""
    double_dqn: bool = True
    """Double DQN targets."""
    dueling: bool = True
    """Dueling value/advantage head."""
    target_every: int = 500
    """Env steps between target-network updates."""
    learning_starts: int = 1000
    """Env steps sampled before the first update."""
    epsilon: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.02})
    """Epsilon schedule over epsilon_horizon env steps, then held at its end value."""
    epsilon_horizon: int = 10_000
    """Env steps over which the epsilon schedule runs."""
    head_hidden: int = 256
    """Units of the Q head's hidden layer after the shared layers (0: none)."""
    rollout_fragment: int = 32
    """Env steps sampled per training step. RLlib's default (n_step, here 3) runs a learner update
    every 3 env steps at ~8 ms of RLlib overhead each: ~120 env steps/s on 2 cores."""
    training_intensity: float = 32 / 3
    """Replayed transitions per sampled env step: RLlib's own default ratio (batch 32 per 3-step
    fragment), kept with the longer fragments, so sample efficiency is unchanged."""
    # RLlib's DQN with 8 vectorized envs per runner collapses to a constant action on CartPole
    # (README, CartPole section); with 1 it learns.
    num_envs: int = 1
    # RLlib's tuned CartPole example (rllib/tuned_examples/dqn/cartpole_dqn.py): one 256-unit tanh
    # layer and a 256-unit head; with 64 x 2 relu it did not solve in 18k env steps.
    hidden: int = 256
    layers: int = 1
    activation: str = "tanh"
    lr: float = 5e-4
    iterations: int = 100

    def __post_init__(self):
        super().__post_init__()
        check_range(self, "[1, inf)", "batch_size buffer_size n_step target_every epsilon_horizon rollout_fragment")
        check_range(self, "[0, inf)", "head_hidden")
        check_range(self, "(0, inf)", "training_intensity")
        check_range(self, "[0, inf)", "learning_starts")
        object.__setattr__(self, "epsilon", schedules.validate(self.epsilon, "epsilon"))


def parse(config: dict) -> RLlibDQNConfig:
    return parse_config(RLlibDQNConfig, config, "rllib-dqn", discrete_only=True)


class RLlibDQNTrainable(RLlibTrainable):
    parse = staticmethod(parse)

    @staticmethod
    def algorithm_config(cfg: RLlibDQNConfig) -> DQNAlgorithmConfig:
        buffer = (
            {"type": "PrioritizedEpisodeReplayBuffer", "capacity": cfg.buffer_size, "alpha": 0.6, "beta": 0.4}
            if cfg.prioritized
            else {"type": "EpisodeReplayBuffer", "capacity": cfg.buffer_size}
        )
        # RLlib's epsilon is [(env_step, value), ...]; past the last point it holds the last value.
        epsilon = [tuple(point) for point in piecewise(cfg.epsilon, 1.0, cfg.epsilon_horizon)]
        algorithm = with_shared_settings(DQNAlgorithmConfig(), cfg)
        model = {
            "fcnet_hiddens": [cfg.hidden] * cfg.layers,
            "fcnet_activation": cfg.activation,
            "head_fcnet_hiddens": [cfg.head_hidden] if cfg.head_hidden else [],
        }
        algorithm = algorithm.rl_module(model_config=model).env_runners(
            rollout_fragment_length=max(cfg.rollout_fragment, cfg.n_step)
        )
        return algorithm.reporting(min_sample_timesteps_per_iteration=cfg.steps_per_iteration).training(
            training_intensity=cfg.training_intensity,
            lr=piecewise(cfg.lr_schedule, cfg.lr, cfg.total_env_steps),
            gamma=cfg.gamma,
            train_batch_size_per_learner=cfg.batch_size,
            replay_buffer_config=buffer,
            n_step=cfg.n_step,
            double_q=cfg.double_dqn,
            dueling=cfg.dueling,
            target_network_update_freq=cfg.target_every,
            num_steps_sampled_before_learning_starts=cfg.learning_starts,
            epsilon=epsilon,
        )
