"""RLlib DQN (new API stack) as a tunelab model: the off-policy library baseline for our own dqn."""

import dataclasses

from ray.rllib.algorithms.dqn import DQNConfig

from trainables import schedules
from trainables.rllib import RLlibSettings, RLlibTrainable, common, piecewise


@dataclasses.dataclass(frozen=True)
class RLlibDQNSettings(RLlibSettings):
    envs_per_env_runner: int = 1
    """Envs per env runner. 1: with 8 vectorized envs RLlib 2.60's DQN collapses to one constant action
    on CartPole (greedy return 9 after 90k env steps, 5 seeds of bench/cartpole.py); with 1 it learns."""
    lr: float = 5e-4
    """Adam learning rate (RLlib's DQN default)."""
    iterations: int = 60
    """Iterations until the trial is done."""
    steps_per_iteration: int = 1000
    """Env steps sampled per iteration (RLlib's min_sample_timesteps_per_iteration)."""
    train_batch_size: int = 32
    """Transitions per gradient update."""
    buffer_size: int = 50_000
    """Replay capacity in env steps."""
    prioritized: bool = True
    """RLlib's PrioritizedEpisodeReplayBuffer (alpha 0.6, beta 0.4) instead of the uniform one."""
    n_step: int = 3
    """Steps summed into each return."""
    double_q: bool = True
    """Double DQN targets."""
    dueling: bool = True
    """Dueling value/advantage head."""
    target_update_every: int = 500
    """Env steps between target-network updates."""
    learning_starts: int = 1000
    """Env steps sampled before the first update."""
    epsilon: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.02})
    """Epsilon schedule over epsilon_horizon env steps, then held at its end value."""
    epsilon_horizon: int = 10_000
    """Env steps over which the epsilon schedule runs."""

    def __post_init__(self):
        super().__post_init__()
        for name, low in [("train_batch_size", 1), ("steps_per_iteration", 1), ("buffer_size", 1), ("n_step", 1),
                          ("target_update_every", 1),
                          ("learning_starts", 0), ("epsilon_horizon", 1)]:
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        object.__setattr__(self, "epsilon", schedules.validate(self.epsilon, "epsilon"))


class RLlibDQNTrainable(RLlibTrainable):
    SETTINGS = RLlibDQNSettings
    MODEL = "rllib-dqn"

    @staticmethod
    def algorithm_config(s: RLlibDQNSettings) -> DQNConfig:
        buffer = ({"type": "PrioritizedEpisodeReplayBuffer", "capacity": s.buffer_size, "alpha": 0.6, "beta": 0.4}
                  if s.prioritized else {"type": "EpisodeReplayBuffer", "capacity": s.buffer_size})
        # RLlib's epsilon is [(env_step, value), ...]; past the last point it holds the last value.
        epsilon = [tuple(point) for point in piecewise(s.epsilon, 1.0, s.epsilon_horizon)]
        horizon = s.iterations * s.steps_per_iteration  # env steps the schedules run over
        config = common(DQNConfig(), s).reporting(min_sample_timesteps_per_iteration=s.steps_per_iteration)
        return config.training(
            lr=piecewise(s.lr_schedule, s.lr, horizon),
            gamma=s.gamma,
            train_batch_size_per_learner=s.train_batch_size,
            replay_buffer_config=buffer,
            n_step=s.n_step,
            double_q=s.double_q,
            dueling=s.dueling,
            target_network_update_freq=s.target_update_every,
            num_steps_sampled_before_learning_starts=s.learning_starts,
            epsilon=epsilon,
        )
