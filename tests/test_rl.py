"""dqn and qtable on real gymnasium envs: schedules, checkpoints, bad inputs, and an honest learning test."""

import math

import numpy as np
import pytest

from search_spaces.dqn import epsilon_decay_per_episode
from trainables import metrics as m
from trainables import rl
from trainables.config import ConfigError
from trainables.dqn import DQNTrainable
from trainables.dqn import parse as dqn_check
from trainables.qtable import QTableTrainable
from trainables.qtable import parse as qtable_check

SMALL = {
    "iterations": 3,
    "steps_per_iteration": 400,
    "learning_starts": 200,
    "buffer_size": 2000,
    "batch_size": 32,
    "eval_episodes": 3,
}


def test_linear_epsilon_follows_env_steps_exactly():
    trainable = DQNTrainable(
        config={**SMALL, "epsilon": {"kind": "linear", "start": 1.0, "end": 0.1}, "epsilon_horizon": 1000}
    )
    result = trainable.train()
    steps = result[m.TRAIN_ENV_STEPS]
    assert steps >= 400
    assert result[m.TRAIN_EPSILON] == pytest.approx(1.0 - 0.9 * steps / 1000, abs=1e-12)
    while trainable.rollout.env_steps < 1000:
        trainable.train()
    assert trainable.epsilon() == pytest.approx(0.1)  # held at the end after the horizon
    trainable.stop()


def test_epsilon_decay_per_episode_is_the_researchs_rule():
    values = epsilon_decay_per_episode(0.995, floor=0.05)
    trainable = DQNTrainable(config={**SMALL, **values})
    trainable.train()
    episodes = trainable.rollout.episodes
    assert episodes > 10
    assert trainable.epsilon() == pytest.approx(0.995**episodes, rel=1e-9)
    trainable.rollout.episodes = 10_000  # far past the horizon: the floor
    assert trainable.epsilon() == pytest.approx(0.995 ** values["epsilon_horizon"]) == pytest.approx(0.05, rel=0.01)
    trainable.stop()


@pytest.mark.parametrize(
    "cls,config",
    [
        (DQNTrainable, {**SMALL, "prioritized": True, "n_step": 3}),
        (QTableTrainable, {"iterations": 3, "steps_per_iteration": 500, "eval_episodes": 3}),
    ],
)
def test_restored_trial_continues_bit_for_bit(cls, config, tmp_path):
    trainable = cls(config=config)
    trainable.train()
    checkpoint = trainable.save(str(tmp_path))
    expected = trainable.train()
    trainable.stop()
    restored = cls(config=config)
    restored.restore(checkpoint)
    got = restored.train()
    restored.stop()
    for key in (m.TRAIN_ENV_STEPS, m.TRAIN_EPISODES, m.TRAIN_EPISODE_RETURN, m.EVAL_RETURN_MEAN, m.TRAIN_UPDATES):
        assert got[key] == expected[key], key
    if cls is DQNTrainable:
        assert got[m.TRAIN_LOSS] == expected[m.TRAIN_LOSS]


def test_evaluation_uses_the_env_reward_not_the_shaped_one():
    trainable = DQNTrainable(config={**SMALL, "shape_angle": 5.0, "shape_position": 5.0})
    result = trainable.train()
    stored = trainable.buffer.data["reward"][: len(trainable.buffer)]
    assert stored.min() < 0.9  # shaped: penalties subtracted from CartPole's reward of 1 per step
    returns = rl.greedy_returns(trainable.greedy, "CartPole-v1", 3)
    assert np.all(returns == np.round(returns)) and result[m.EVAL_RETURN_MEAN] >= 8  # whole steps
    trainable.stop()


def test_any_box_discrete_env_works():
    trainable = DQNTrainable(config={**SMALL, "env": "Acrobot-v1", "iterations": 1})
    result = trainable.train()
    assert -500 <= result[m.SCORE] <= 0 and result[m.baseline_metric(m.BASELINE_RANDOM, m.SCORE)] < 0
    assert math.isnan(result[m.SOLVE_ENV_STEPS]) or result[m.SOLVE_ENV_STEPS] > 0
    trainable.stop()


@pytest.mark.parametrize(
    "check,config,message",
    [
        (dqn_check, {"env": "NoSuchEnv-v0"}, "'NoSuchEnv-v0' is not a registered gymnasium environment"),
        (dqn_check, {"env": "Pendulum-v1"}, "dqn needs discrete actions, but Pendulum-v1 has Box"),
        (dqn_check, {"buffer_size": -5}, "buffer_size must be >= 1, got -5"),
        (dqn_check, {"env": "Acrobot-v1", "shape_angle": 1.0}, "Acrobot-v1 is not CartPole"),
        (dqn_check, {"epsilon": {"kind": "exp", "start": 1.0}}, "epsilon of kind 'exp' needs 'end'"),
        (qtable_check, {"buckets": [2, 2]}, "buckets has 2 entries but CartPole-v1 observations have 4"),
        (qtable_check, {"env": "MountainCar-v0", "buckets": [4, 4]}, None),
    ],
)
def test_bad_config_is_one_clear_error(check, config, message):
    if message is None:
        check(config)  # a bounded env needs no clip ranges
        return
    with pytest.raises(ConfigError) as err:
        check(config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_dqn_learns_cartpole_far_above_random():
    """The honesty test: fixed seed, the default config, at most 30k env steps (under 10 s here):
    greedy return > 200 against about 20 for the random policy on the same episodes."""
    trainable = DQNTrainable(config={"seed": 0})
    best = 0.0
    while best <= 200 and trainable.rollout.env_steps < 30_000:
        result = trainable.train()
        best = max(best, result[m.SCORE])
    trainable.stop()
    random_score = result[m.baseline_metric(m.BASELINE_RANDOM, m.SCORE)]
    assert random_score < 40
    assert best > 200, best
