"""The evaluation protocol every recommender shares: splits, the training vocabulary, full-ranking
metrics by hand, ground-truth normalisation, sequential synthetic data, and the tuned baselines."""

import numpy as np
import pytest

from trainables import metrics as m
from trainables.config import ConfigError
from trainables.recsys import baselines, protocol, ratings

SMALL = {"synthetic_users": 300, "synthetic_items": 80}


def write_tsv(tmp_path, rows, name="r.tsv"):
    path = tmp_path / name
    path.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    return path


def split_of(path, **settings):
    return protocol.make_split(ratings.load(path), protocol.DataConfig(data=str(path), **settings))


def test_leave_one_out_by_hand(tmp_path):
    """Issue 9, problem 3: per user in time order, last = test, second last = validation, the rest
    training; a user with fewer than 3 interactions is training only."""
    rows = [("a", f"i{k}", 4, k) for k in range(5)] + [("b", "i0", 5, 1), ("b", "i9", 2, 2)]
    rows += [("c", "i3", 1, 9), ("c", "i1", 3, 7), ("c", "i2", 5, 8)]  # out of order in the file
    path = write_tsv(tmp_path, rows)
    data = ratings.load(path)
    split = protocol.make_split(data, protocol.DataConfig(data=str(path)))
    assert split.split == "loo"
    code = {name: k for k, name in enumerate(data.user_ids)}
    assert split.valid.context.users.tolist() == split.test.context.users.tolist() == sorted([code["a"], code["c"]])
    item = {}  # item index -> name, from user a's history (i0..i4 in order)
    for k in range(5):
        item[data.items[data.users == code["a"]][k]] = f"i{k}"
    a = split.valid.context.users.tolist().index(code["a"])
    assert split.valid.context.lengths[a] == 3 and item[split.valid.targets[a]] == "i3"
    assert split.test.context.lengths[a] == 4 and item[split.test.targets[a]] == "i4"
    c = split.valid.context.users.tolist().index(code["c"])
    assert split.valid.target_ratings[c] == 5 and split.test.target_ratings[c] == 1  # i2 at 8, i3 at 9
    train = {int(u): n for u, n in zip(split.train.users, split.train.lengths)}
    assert train == {code["a"]: 3, code["b"]: 2, code["c"]: 1}  # b (2 interactions) is training only
    # The vocabulary is the training data's: a's i3 and i4 occur only as targets.
    assert not split.vocabulary[split.test.targets[a]] and not split.vocabulary[split.valid.targets[a]]


def test_time_split_cuts_every_user_at_the_same_time(tmp_path):
    rows = [(u, f"i{(u * 7 + t) % 30}", 1 + t % 5, t) for u in range(20) for t in range(u % 3, 100, 3)]
    path = write_tsv(tmp_path, rows)
    data = ratings.load(path)
    split = protocol.make_split(data, protocol.DataConfig(data=str(path), split="time", eval_fraction=0.1))
    cut_valid, cut_test = np.quantile(data.timesteps, [0.8, 0.9])
    starts = np.concatenate([[0], np.cumsum(data.lengths())])
    for held, low, high in [(split.valid, cut_valid, cut_test), (split.test, cut_test, np.inf)]:
        assert held.context.count > 0
        for user, n in zip(held.context.users, held.context.lengths):
            times = data.timesteps[starts[user] : starts[user + 1]]
            assert low <= times[n] < high  # the target: the first interaction in the period
            assert n == 0 or times[n - 1] < low  # the context: everything before it
    # Training is what precedes the validation period, for every user.
    assert split.train.lengths.sum() == (data.timesteps < cut_valid).sum()


def test_synthetic_validation_and_test_users_are_disjoint_with_truth():
    _, split = protocol.load_split(protocol.DataConfig(**SMALL))
    assert split.split == "users"
    valid, test = set(split.valid.context.users), set(split.test.context.users)
    assert len(valid) == len(test) == 30 and not valid & test
    assert split.valid.truth.shape == (30, 80) and split.test.truth.shape == (30, 80)
    # Their last interaction is held out of training; everything before it is trained on.
    lengths = dict(zip(split.train.users.tolist(), split.train.lengths.tolist()))
    for user, n in zip(split.test.context.users, split.test.context.lengths):
        assert lengths[user] == n


def test_short_histories_are_kept_not_refused(tmp_path):
    """Issue 9, problem 6: no user is refused or dropped for a short history (left padding)."""
    rows = [(f"u{u}", f"i{(u + k) % 12}", 1 + (u + k) % 5, k) for u in range(40) for k in range(3 + u % 3)]
    split = split_of(write_tsv(tmp_path, rows))
    assert split.valid.context.count == split.test.context.count == 40  # every user has 3+: all evaluated
    assert split.valid.context.lengths.min() == 1


def test_ranking_metrics_by_hand():
    ranks = np.array([0.0, 3.0, 12.0, np.inf])
    got = protocol.ranking_metrics(ranks)
    assert got[m.HR] == 0.5
    assert got[m.NDCG] == pytest.approx((1 + 1 / np.log2(5)) / 4)
    assert got[m.MRR] == pytest.approx((1 + 1 / 4 + 1 / 13) / 4)
    # the per-user lists compare's intervals resample average to the same figures
    per = protocol.per_user_metrics(ranks, np.arange(4), np.full(4, 5.0))
    assert per[m.MRR] == pytest.approx([1, 1 / 4, 1 / 13, 0], abs=1e-6)
    assert [np.mean(per[k]) for k in (m.HR, m.NDCG, m.MRR)] == pytest.approx([got[m.HR], got[m.NDCG], got[m.MRR]])


def test_evaluate_ranks_fully_excludes_seen_and_untrained_items():
    """Issue 9, problem 1: an item that never occurs in training is never recommended and earns
    nothing, even for a scorer that puts it first; a context item is never recommended again."""
    context = protocol.Sequences(
        items=np.array([[0, 1, -1], [2, -1, -1]]),
        values=np.array([[4, 5, 0], [3, 0, 0]], dtype=np.float32),
        lengths=np.array([2, 1]),
        users=np.array([0, 1]),
    )
    n_items = 15
    vocabulary = np.ones(n_items, dtype=bool)
    vocabulary[14] = False  # item 14 occurs only in held-out data
    held = protocol.Heldout(context, targets=np.array([14, 3]), target_ratings=np.array([5.0, 2.0]), truth=None)
    picked = []

    def cheat(ctx):  # ranks item 14 first, then the user's own items, then by id
        scores = -np.tile(np.arange(n_items, dtype=float), (ctx.count, 1))
        scores[:, 14] = 100.0
        for row, items in enumerate(ctx.items):
            scores[row, items[items >= 0]] = 50.0
        picked.append(protocol.top_n(np.where(protocol.exclusion_mask(ctx, vocabulary), -np.inf, scores)))
        return scores

    got = protocol.evaluate(cheat, held, vocabulary, m.TEST)
    top = picked[0]
    assert 14 not in top and not {0, 1} & set(top[0]) and 2 not in top[1]
    # User 0's target (14) cannot be ranked: a miss. User 1's target 3 is ranked after 0, 1: rank 2.
    assert got[m.split_metric(m.TEST, m.HR)] == 0.5
    assert got[m.split_metric(m.TEST, m.MRR)] == pytest.approx((0 + 1 / 3) / 2)
    assert got[m.split_metric(m.TEST, m.LIKED + m.HR)] == 0.0  # the liked target was the untrainable one
    assert got[m.split_metric(m.TEST, m.COVERAGE)] == pytest.approx(len(set(top.ravel())) / 14)


def test_constant_scores_earn_nothing():
    """Ties are broken against the target: a model that cannot tell items apart ranks them last."""
    context = protocol.Sequences(np.array([[0]]), np.array([[3.0]], dtype=np.float32), np.array([1]), np.array([0]))
    held = protocol.Heldout(context, np.array([5]), np.array([4.0]), None)
    got = protocol.evaluate(lambda ctx: np.zeros((ctx.count, 30)), held, np.ones(30, dtype=bool), m.VALID)
    assert got[m.split_metric(m.VALID, m.HR)] == 0.0


def test_truth_is_normalised_random_zero_oracle_one():
    """Issue 9, problem 4: the zero point of the synthetic score is random, not popularity, and
    the oracle (ranking by the true expected rating) is 1."""
    _, split = protocol.load_split(protocol.DataConfig(**SMALL))
    norm = m.split_metric(m.VALID, m.TRUE_RATING_NORM)
    oracle = protocol.evaluate(lambda ctx: split.valid.truth[: ctx.count], split.valid, split.vocabulary, m.VALID)
    assert oracle[norm] == pytest.approx(1.0)
    random = [
        protocol.evaluate(
            baselines.fit(baselines.BaselineConfig(method="random", seed=s, **SMALL), split),
            split.valid,
            split.vocabulary,
            m.VALID,
        )[norm]
        for s in range(20)
    ]
    assert abs(np.mean(random)) < 3 * np.std(random) / np.sqrt(20) + 0.01


def test_synthetic_histories_have_order():
    """Issue 9, problem 5: taste drifts over a history and the last item shapes the next rating,
    so what a user would rate highly depends on where they are in their history."""
    data = ratings.synthetic(ratings.SyntheticSpec(n_users=200, n_items=100, min_len=30, max_len=40, seed=4))
    tastes = data.truth.tastes  # (U, T + 1, F)
    near = np.mean([np.corrcoef(tastes[u, 0], tastes[u, 1])[0, 1] for u in range(200)])
    far = np.mean([np.corrcoef(tastes[u, 0], tastes[u, 30])[0, 1] for u in range(200)])
    assert near > 0.95 and far < 0.85
    users, steps = np.arange(200), np.full(200, 10)
    a = data.truth.expected(users, steps, np.zeros(200, dtype=int))
    b = data.truth.expected(users, steps, np.ones(200, dtype=int))
    assert np.abs(a - b).mean() > 0.05  # the previous item changes the next step's ratings
    # A consumed item is never consumed again.
    for u in range(200):
        history = data.items[data.users == u]
        assert len(set(history)) == len(history)


@pytest.mark.slow
def test_baselines_rank_sensibly_on_ground_truth():
    """The static collaborative filter beats the non-personalised lists, which beat nothing: if a
    baseline were broken (e.g. a transposed weight matrix) this order would not hold."""
    _, split = protocol.load_split(protocol.DataConfig())
    norm = m.split_metric(m.VALID, m.TRUE_RATING_NORM)
    got = {}
    for method, extra in [("popularity", {}), ("toprated", {}), ("itemknn", {"min_rating": 4.0}), ("ease", {})]:
        cfg = baselines.BaselineConfig(method=method, **extra)
        got[method] = protocol.evaluate(baselines.fit(cfg, split), split.valid, split.vocabulary, m.VALID)[norm]
    assert got["ease"] > got["toprated"] + 0.03 and got["ease"] > got["popularity"] + 0.1, got
    assert got["itemknn"] > got["popularity"], got


def test_reference_baselines_are_selected_on_validation_and_skipped_on_large_catalogues(monkeypatch):
    """Beside every trial: popularity, random, and EASE and item-kNN picked on the validation score
    from their grids (each reported figure is the best grid point's, never a test-selected one);
    above REFERENCE_MAX_ITEMS only the cheap two."""
    _, split = protocol.load_split(protocol.DataConfig(**SMALL))
    valid = baselines.reference(split, 0)
    score = protocol.score_metric(split)
    for method, grid in baselines.REFERENCE_GRIDS.items():
        candidates = [
            protocol.evaluate(baselines.fit(baselines.BaselineConfig(method=method, **g), split), split.valid,
                              split.vocabulary, m.VALID)[score]
            for g in grid
        ]  # fmt: skip
        assert valid[m.baseline_metric(method, m.SCORE)] == max(candidates)
    test = baselines.reference(split, 0, m.TEST)
    assert {m.baseline_metric(b, m.split_metric(m.TEST, m.HR)) for b in ("ease", "itemknn")} <= set(test)
    monkeypatch.setattr(baselines, "REFERENCE_MAX_ITEMS", split.n_items - 1)
    names = {key.split("/")[1] for key in baselines.reference(split, 0)}
    assert names == {"popularity", "random"}


def test_bad_data_settings_are_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="split must be one of auto, loo, time, users"):
        baselines.check({"split": "random"})
    path = write_tsv(tmp_path, [("a", "i1", 4, 1), ("a", "i2", 5, 2), ("b", "i1", 3, 1)])
    with pytest.raises(ConfigError, match=r"0 users with 3\+ interactions .* need at least 1"):
        baselines.check({"data": str(path)})


@pytest.mark.slow
def test_order_carries_signal_a_sequential_model_learns():
    """Issue 9, problem 5: trained on histories whose order was shuffled, a sequential model (item-kNN
    over "j follows i") loses most of its score on ground truth; a static model (EASE, item-kNN
    over whole histories) gets exactly the same score, order being invisible to it."""
    norm = m.split_metric(m.VALID, m.TRUE_RATING_NORM)
    got = {}
    for shuffle in (False, True):
        for name, settings in [
            ("next", {"method": "itemknn", "cooccurrence": "next", "recent": 1, "min_rating": 4.0}),
            ("ease", {"method": "ease", "min_rating": 4.0}),
            ("history", {"method": "itemknn", "min_rating": 4.0}),
        ]:
            cfg = baselines.BaselineConfig(shuffle_order=shuffle, **settings)
            _, split = protocol.load_split(cfg)
            got[name, shuffle] = protocol.evaluate(baselines.fit(cfg, split), split.valid, split.vocabulary, m.VALID)[
                norm
            ]
    assert got["next", False] > got["next", True] + 0.08, got
    assert got["ease", False] == got["ease", True] and got["history", False] == got["history", True], got


def test_the_rating_prior_is_toprated_z_scored_over_the_vocabulary_and_moves_hits_to_liked_items(tmp_path):
    """platform.returns' reference given the ratings the DT reads: scores + lambda x z(shrunk mean
    rating). On data where half the items are rated 5 and half 1, a large lambda ranks the 5-star
    items first, so every hit is a liked one."""
    from platform import returns

    rng = np.random.default_rng(0)
    rows = []
    for user in range(200):
        items = rng.choice(40, 12, replace=False)
        rows += [(user, int(i), 5 if i % 2 else 1, t) for t, i in enumerate(items)]
    split = split_of(write_tsv(tmp_path, rows))
    prior = returns.rating_prior(split)
    known = prior[split.vocabulary]
    assert known.mean() == pytest.approx(0, abs=1e-9) and known.std() == pytest.approx(1)
    assert (prior[1::2][split.vocabulary[1::2]] > 0).all() and (prior[0::2][split.vocabulary[0::2]] < 0).all()
    popularity = baselines.fit(baselines.BaselineConfig(method="popularity"), split)
    hits = {}
    for lam in (0.0, 1e3):
        score = returns.with_prior(popularity, prior, lam)
        users = protocol.evaluate(score, split.test, split.vocabulary, m.TEST, per_user=True)
        per = users[m.split_metric(m.TEST, m.PER_USER)]
        hit = np.asarray(per[m.HR], bool)
        hits[lam] = np.asarray(per[m.TARGET_RATING])[hit]
    assert len(hits[1e3]) and (hits[1e3] == 5).all() and (hits[0.0] == 1).any()
