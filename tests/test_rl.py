"""dqn and qtable on real gymnasium envs: schedules, checkpoints, bad inputs, and an honest learning test."""

import math

import numpy as np
import pytest

from search_spaces.dqn import epsilon_decay_per_episode
from trainables import metrics as m
from trainables.config import ConfigError
from trainables.rl import common
from trainables.rl.dqn import DQNTrainable
from trainables.rl.dqn import parse as dqn_check
from trainables.rl.qtable import QTableTrainable
from trainables.rl.qtable import parse as qtable_check

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
    returns = common.greedy_returns(trainable.greedy, "CartPole-v1", 3)
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


def test_hand_written_update_matches_autograd_and_torch_adam():
    """dqn's FusedMLP gradient and FlatAdam step against autograd, clip_grad_norm_ and torch.optim.Adam."""
    import torch
    from torch.nn import functional as F

    from trainables.rl.dqn import FlatAdam, FusedMLP, QNetwork, flatten_parameters

    torch.manual_seed(0)
    net, ref = QNetwork(4, 2, 16, 2), QNetwork(4, 2, 16, 2)
    ref.load_state_dict(net.state_dict())
    flat = flatten_parameters(net)
    fused, adam = FusedMLP(net, flat), FlatAdam(flat.data, 1e-2)
    torch_adam = torch.optim.Adam(ref.parameters(), lr=1e-2)
    obs, action = torch.randn(64, 4), torch.randint(0, 2, (64, 1))
    target, weights = 3 * torch.randn(64), torch.rand(64)
    for _ in range(3):
        q = ref(obs).gather(1, action).squeeze(1)
        (weights * F.huber_loss(q, target, reduction="none")).mean().backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        torch_adam.step()
        torch_adam.zero_grad()
        with torch.no_grad():
            inputs: list = []
            q_all = fused.forward(obs, inputs)
            td = q_all.gather(1, action).squeeze(1) - target
            fused.backward(
                inputs, torch.zeros_like(q_all).scatter_(1, action, (weights * td.clamp(-1, 1) / 64)[:, None])
            )
            flat.grad.mul_((0.5 / (flat.grad.norm() + 1e-6)).clamp_(max=1.0))
            adam.step(flat.grad)
    for mine, theirs in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_evaluation_stops_once_the_mean_cannot_reach_the_threshold():
    always_left = lambda obs: np.zeros(len(obs), np.int64)  # noqa: E731  (falls within ~10 steps)
    full = common.greedy_returns(always_left, "CartPole-v1", 5)
    stopped, complete = common.greedy_evaluation(always_left, "CartPole-v1", 5, stop_below=475.0)
    assert not complete and np.all(stopped <= full) and stopped.sum() < full.sum()
    same, complete = common.greedy_evaluation(always_left, "CartPole-v1", 5, stop_below=5.0)
    assert complete and np.array_equal(same, full)


def test_rllib_dqn_samples_fragments_at_rllibs_own_replay_ratio():
    from trainables.rl.rllib_dqn import RLlibDQNTrainable
    from trainables.rl.rllib_dqn import parse as rllib_dqn_check

    algorithm = RLlibDQNTrainable.algorithm_config(rllib_dqn_check({"num_env_runners": 0}))
    assert algorithm.get_rollout_fragment_length() == 32
    assert algorithm.training_intensity == pytest.approx(32 / 3)  # batch 32 per n_step (3) fragment, as RLlib's default
    assert (
        algorithm.model_config["head_fcnet_hiddens"] == [256] and algorithm.model_config["fcnet_activation"] == "tanh"
    )
