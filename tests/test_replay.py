"""Replay buffers and n-step aggregation: the pieces DQN's correctness rests on."""

import math

import numpy as np
import pytest

from trainables.rl.replay import NStep, PrioritizedReplayBuffer, ReplayBuffer, SumTree


def transitions(k: int, start: int = 0, obs_dim: int = 2) -> dict:
    ids = np.arange(start, start + k, dtype=np.float32)
    return {
        "obs": np.repeat(ids[:, None], obs_dim, 1),
        "action": np.arange(start, start + k) % 2,
        "reward": ids,
        "next_obs": np.repeat(ids[:, None] + 1, obs_dim, 1),
        "terminal": np.zeros(k, np.float32),
        "discount": np.full(k, 0.99, np.float32),
    }


def test_ring_wraps_and_keeps_the_newest():
    buffer = ReplayBuffer(5, 2, np.random.default_rng(0))
    buffer.add(**transitions(3))
    buffer.add(**transitions(4, start=3))  # 7 transitions into 5 rows: 0 and 1 are overwritten
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.data["reward"].tolist()) == [2, 3, 4, 5, 6]
    assert buffer.data["reward"][:2].tolist() == [5, 6]  # written where 0 and 1 were
    batch, rows, weights = buffer.sample(1000)
    assert set(batch["reward"].tolist()) == {2, 3, 4, 5, 6}
    np.testing.assert_array_equal(batch["obs"][:, 0], batch["reward"])  # fields stay aligned
    assert np.all(weights == 1.0)


def test_buffer_state_round_trip():
    buffer = ReplayBuffer(8, 2, np.random.default_rng(0))
    buffer.add(**transitions(11))
    clone = ReplayBuffer(8, 2, np.random.default_rng(0))
    clone.load_state_dict(buffer.state_dict())
    assert clone.pos == buffer.pos and len(clone) == len(buffer)
    for name in buffer.data:
        np.testing.assert_array_equal(clone.data[name], buffer.data[name])


def test_sum_tree_sums_and_prefix_search_match_brute_force():
    rng = np.random.default_rng(1)
    tree = SumTree(13)  # not a power of two: padded leaves stay 0
    priorities = np.zeros(13)
    for _ in range(50):
        rows = rng.integers(0, 13, 6)  # duplicates included
        values = rng.random(6) * 10
        tree.set(rows, values)
        for r, v in zip(rows, values):
            priorities[r] = v  # the last write wins, as in the tree
    assert math.isclose(tree.total(), priorities.sum(), rel_tol=1e-12)
    internal = np.arange(1, tree.leaves)
    np.testing.assert_allclose(tree.tree[internal], tree.tree[2 * internal] + tree.tree[2 * internal + 1])
    mass = rng.random(1000) * priorities.sum()
    expected = np.searchsorted(np.cumsum(priorities), mass, side="right")
    np.testing.assert_array_equal(tree.find(mass), expected)


def test_prioritized_sampling_frequencies_match_priorities():
    alpha, n_rows, draws = 0.6, 20, 200_000
    buffer = PrioritizedReplayBuffer(32, 2, np.random.default_rng(2), alpha=alpha, eps=1e-6)
    buffer.add(**transitions(n_rows))
    td = np.linspace(0.1, 5.0, n_rows)
    buffer.update_priorities(np.arange(n_rows), td)
    p = (td + 1e-6) ** alpha
    p /= p.sum()
    counts = np.zeros(n_rows)
    for _ in range(draws // 500):
        _, rows, _ = buffer.sample(500, beta=0.4)
        counts += np.bincount(rows, minlength=32)[:n_rows]
    assert counts.sum() == draws  # never a padded or empty row
    # Each count is at most binomial(draws, p_i) around draws * p_i (stratified sampling only narrows
    # it): 5 standard deviations fail a correct sampler about once in 10^5 runs of the test.
    tolerance = 5 * np.sqrt(draws * p * (1 - p))
    assert np.all(np.abs(counts - draws * p) <= tolerance), (counts, draws * p)


def test_importance_weights_follow_beta():
    buffer = PrioritizedReplayBuffer(4, 2, np.random.default_rng(3), alpha=1.0, eps=0.0)
    buffer.add(**transitions(4))
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    _, rows, weights = buffer.sample(64, beta=0.5)
    probs = (rows + 1) / 10.0
    expected = (4 * probs) ** -0.5
    np.testing.assert_allclose(weights, expected / expected.max(), rtol=1e-6)
    assert buffer.max_priority == 4.0


def test_new_transitions_get_the_largest_priority():
    buffer = PrioritizedReplayBuffer(8, 2, np.random.default_rng(4), alpha=1.0, eps=0.0)
    buffer.add(**transitions(2))
    buffer.update_priorities(np.array([0, 1]), np.array([0.5, 7.0]))
    buffer.add(**transitions(1, start=2))
    assert buffer.tree.get(np.array([2]))[0] == 7.0


def test_nstep_returns_stop_at_episode_end_and_bootstrap_after_truncation():
    gamma, n = 0.5, 3
    nstep = NStep(n, gamma)
    obs = lambda t: np.array([[t], [10 + t]], np.float32)  # noqa: E731  (2 envs, obs = time)
    false, true = np.array([False, False]), np.array([True, True])
    # env 0 terminates at t=1; env 1 is truncated (time limit) at t=1; t=2 is both envs' reset step.
    steps = [
        (obs(0), np.array([0, 0]), np.array([1.0, 1.0], np.float32), obs(1), false, false, true),
        (obs(1), np.array([1, 1]), np.array([2.0, 2.0], np.float32), obs(2), np.array([True, False]), true, true),
        (obs(2), np.array([0, 0]), np.array([0.0, 0.0], np.float32), obs(3), false, false, false),
        (obs(3), np.array([1, 1]), np.array([4.0, 4.0], np.float32), obs(4), false, false, true),
    ]
    out = [nstep.push(*s) for s in steps]
    assert out[0] is None and out[1] is None
    first = out[2]  # transitions starting at t=0: two real steps, then the episode ended
    np.testing.assert_allclose(first["reward"], [1 + 0.5 * 2, 1 + 0.5 * 2])
    np.testing.assert_allclose(first["discount"], [0.25, 0.25])
    np.testing.assert_allclose(first["terminal"], [1.0, 0.0])  # truncation is not terminal
    np.testing.assert_allclose(first["next_obs"][:, 0], [2, 12])  # the final observations
    second = out[3]  # starting at t=1: one step
    np.testing.assert_allclose(second["reward"], [2.0, 2.0])
    np.testing.assert_allclose(second["discount"], [0.5, 0.5])
    assert len(nstep.push(*steps[3])["action"]) == 0  # the window starts on the reset step: nothing


def test_negative_capacity_is_refused():
    with pytest.raises(ValueError, match="buffer_size must be >= 1"):
        ReplayBuffer(-5, 2, np.random.default_rng(0))
