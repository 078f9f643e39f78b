"""RLlib PPO (new API stack) as a tunelab model: the on-policy baseline every model is compared with."""

import dataclasses

from ray.rllib.algorithms.ppo import PPOConfig

from trainables import schedules
from trainables.rllib import RLlibSettings, RLlibTrainable, common, piecewise


@dataclasses.dataclass(frozen=True)
class PPOSettings(RLlibSettings):
    train_batch_size: int = 2000
    """Env steps per iteration (one PPO update round)."""
    minibatch_size: int = 128
    """SGD minibatch; at most train_batch_size (a larger value, e.g. from a search, is cut to it)."""
    num_epochs: int = 6
    """Passes over each train batch."""
    clip_param: float = 0.2
    """PPO's policy-ratio clip."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    vf_loss_coeff: float = 0.01
    """Value-loss weight (CartPole returns reach 500: a small weight keeps the value loss from dominating)."""
    entropy_coeff: float = 0.0
    """Entropy bonus; entropy_schedule multiplies it."""
    entropy_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "constant", "start": 1.0})
    """Entropy-bonus multiplier over training progress."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("train_batch_size", "minibatch_size", "num_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        object.__setattr__(self, "entropy_schedule", schedules.validate(self.entropy_schedule, "entropy_schedule"))


class PPOTrainable(RLlibTrainable):
    SETTINGS = PPOSettings
    MODEL = "ppo"

    @staticmethod
    def algorithm_config(s: PPOSettings) -> PPOConfig:
        horizon = s.iterations * s.train_batch_size  # env steps the schedules run over
        return common(PPOConfig(), s).training(
            lr=piecewise(s.lr_schedule, s.lr, horizon),
            gamma=s.gamma,
            train_batch_size_per_learner=s.train_batch_size,
            minibatch_size=min(s.minibatch_size, s.train_batch_size),
            num_epochs=s.num_epochs,
            clip_param=s.clip_param,
            lambda_=s.gae_lambda,
            vf_loss_coeff=s.vf_loss_coeff,
            entropy_coeff=piecewise(s.entropy_schedule, s.entropy_coeff, horizon),
        )
