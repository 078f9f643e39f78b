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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "double_dqn, prioritized", [(False, False), (True, False), (False, True), (True, True)], ids=str
)
def test_update_matches_autograd_of_the_documented_loss(double_dqn, prioritized):
    """DQNTrainable.update() itself (hand-written gradient, global-norm clip, fused Adam) against
    autograd on the loss it documents: mean over the batch of w * Huber(Q(s, a) - y), with
    y = r + discount * (1 - terminal) * Q_target(s', a*), a* = argmax Q_target(s') (single DQN) or
    argmax Q_online(s') (double DQN), w the prioritized-replay importance weights (1 if uniform);
    then clip_grad_norm_ and torch.optim.Adam. Three updates on real CartPole transitions."""
    import torch
    from torch.nn import functional as F

    from trainables.rl.dqn import QNetwork

    config = {
        **SMALL,
        "hidden": 16,
        "double_dqn": double_dqn,
        "prioritized": prioritized,
        "max_grad_norm": 0.5,  # small enough that the clip acts
        "target_every": 10_000,  # the target network stays put during the test
    }
    trainable = DQNTrainable(config=config)
    cfg = trainable.cfg
    while len(trainable.buffer) < 4 * cfg.batch_size:
        trainable.collect()
    if prioritized:  # new transitions all get the largest priority: spread them, so the weights differ
        rows = np.arange(len(trainable.buffer))
        trainable.buffer.update_priorities(rows, np.random.default_rng(0).exponential(1.0, len(rows)))
    with torch.no_grad():  # a target unlike the online network, so single and double DQN differ
        trainable.target_flat.add_(0.3 * torch.randn_like(trainable.target_flat))
    ref = QNetwork(trainable.obs_dim, trainable.n_actions, cfg.hidden, cfg.layers)
    ref.load_state_dict(trainable.online.state_dict())
    target = QNetwork(trainable.obs_dim, trainable.n_actions, cfg.hidden, cfg.layers)
    target.load_state_dict(trainable.target.state_dict())
    adam = torch.optim.Adam(ref.parameters(), lr=trainable.learning_rate())
    targets_differ = []
    for _ in range(3):
        # The batch update() will draw: sample it with the trainable's RNG, then rewind the RNG.
        rng_state = trainable.rng.bit_generator.state
        batch, _, weights = trainable.buffer.sample(cfg.batch_size, trainable.beta())
        trainable.rng.bit_generator.state = rng_state
        obs, next_obs = torch.as_tensor(batch["obs"]), torch.as_tensor(batch["next_obs"])
        action = torch.as_tensor(batch["action"])[:, None]
        reward, terminal, discount = (torch.as_tensor(batch[k]) for k in ("reward", "terminal", "discount"))
        w = torch.as_tensor(weights)
        if prioritized:
            assert not torch.allclose(w, torch.ones_like(w)), "the weights must matter in this test"
        with torch.no_grad():
            next_q = target(next_obs)
            chosen = (ref(next_obs) if double_dqn else next_q).argmax(1, keepdim=True)
            y = reward + discount * (1 - terminal) * next_q.gather(1, chosen).squeeze(1)
            y_other = reward + discount * (1 - terminal) * next_q.gather(
                1, (next_q if double_dqn else ref(next_obs)).argmax(1, keepdim=True)
            ).squeeze(1)
            targets_differ.append(not torch.allclose(y, y_other))
        q = ref(obs).gather(1, action).squeeze(1)
        loss = (w * F.huber_loss(q, y, reduction="none", delta=cfg.huber_delta)).mean()
        adam.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.max_grad_norm)
        expected_grad = torch.cat([p.grad.reshape(-1) for p in ref.parameters()])
        adam.step()

        before = trainable.online_flat.detach().clone()
        mine = trainable.update()
        torch.testing.assert_close(mine, loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(trainable.online_flat.grad, expected_grad, rtol=1e-4, atol=1e-6)
        change = trainable.online_flat.detach() - before
        assert change.abs().max() > 0
        torch.testing.assert_close(change, torch.cat([p.detach().reshape(-1) for p in ref.parameters()]) - before)
    assert any(targets_differ), "single and double DQN targets coincide: the test could not tell them apart"
    for mine, theirs in zip(trainable.online.parameters(), ref.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    trainable.stop()


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
