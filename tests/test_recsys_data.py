"""Real rating data (issue 23, parts 1 and 7): the MovieLens archive formats, public datasets by
name (cache, checksum, offline message; nothing downloads here), the order of same-second ties,
half stars, and bad input to the evaluation (non-finite scores, tiny catalogues, repeated targets)."""

import hashlib
import zipfile

import numpy as np
import pytest

from trainables import metrics as m
from trainables.config import ConfigError
from trainables.recsys import baselines, protocol, ratings
from trainables.recsys.ratings import DataError

# (user, item, rating, timestamp): half stars, and same-second ties within a user.
ROWS = [(1, 10, 4.5, 100), (1, 20, 0.5, 100), (1, 30, 3.0, 90), (2, 10, 5.0, 7), (2, 40, 2.5, 7), (2, 30, 1.0, 8)]


def write_formats(tmp_path, rows):
    """The same interactions in each format the public archives (and RecBole) ship."""
    lines = {
        "u.data": "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows),
        "ratings.dat": "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in rows),
        "ratings.csv": "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in rows),
        "ml.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r:g}\t{t:.1f}\n" for u, i, r, t in rows),
    }
    paths = {}
    for name, text in lines.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return paths


def arrays(data):
    return [data.users, data.items, data.ratings, data.timesteps]


def test_every_archive_format_loads_with_the_defaults_and_keeps_half_stars(tmp_path):
    paths = write_formats(tmp_path, ROWS)
    loaded = {name: ratings.load(path) for name, path in paths.items()}
    formats = {name: data.source.rsplit("(", 1)[1] for name, data in loaded.items()}
    assert formats == {"u.data": "tsv)", "ratings.dat": "dat)", "ratings.csv": "movielens)", "ml.inter": "recbole)"}
    first = loaded["u.data"]
    for data in loaded.values():
        assert all(np.array_equal(a, b) for a, b in zip(arrays(data), arrays(first)))
    assert sorted(first.ratings.tolist()) == sorted(r for _, _, r, _ in ROWS)  # 0.5 and 2.5 as written
    assert (first.n_users, first.n_items) == (2, 4)


def random_log(seed, users=40, items=60, per_user=12):
    """Interactions stamped from only 3 distinct seconds per user: most of them are ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for i in rng.choice(items, size=per_user, replace=False):
            rows.append((u, int(i), float(rng.integers(1, 11)) / 2, int(1000 + 10 * u + rng.integers(0, 3))))
    return rows


def split_by_ids(path):
    """The loo split, in the file's own ids: {user id: (training items, validation item, test item)}."""
    data = ratings.load(path)
    split = protocol.make_split(data, protocol.DataConfig(data=str(path)))
    out = {}
    for held, part in ((split.valid, 1), (split.test, 2)):
        for row, user in enumerate(held.context.users):
            out.setdefault(int(data.user_ids[user]), [None, None, None])[part] = int(held.targets[row])
    for row, user in enumerate(split.train.users):
        n = split.train.lengths[row]
        out.setdefault(int(data.user_ids[user]), [None, None, None])[0] = tuple(split.train.items[row, :n])
    return data, out


def test_ties_do_not_depend_on_row_order_or_item_ids(tmp_path):
    """Same-second ties (most rows here) are ordered by the documented hash rule: shuffling the
    file's rows and renaming every item leaves every user's training order and targets the same."""
    rows = random_log(0)
    rng = np.random.default_rng(1)
    rename = dict(zip(range(60), (rng.permutation(60) * 7 + 1000).tolist()))  # a new id, a new id order
    shuffled = [(u, rename[i], r, t) for u, i, r, t in (rows[k] for k in rng.permutation(len(rows)))]
    a, b = tmp_path / "a.data", tmp_path / "b.data"
    a.write_text("".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows))
    b.write_text("".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in shuffled))
    data_a, split_a = split_by_ids(a)
    data_b, split_b = split_by_ids(b)
    # Item indices follow the ids, so map both back to the original names before comparing.
    names_a = np.unique([i for _, i, _, _ in rows])
    back = {v: k for k, v in rename.items()}
    names_b = np.array([back[i] for i in np.unique([i for _, i, _, _ in shuffled])])

    def named(split, names):
        return {u: (tuple(names[list(train)]), names[valid], names[test]) for u, (train, valid, test) in split.items()}

    assert named(split_a, names_a) == named(split_b, names_b)
    # The rule is not the file's order: among ties, the order differs from the rows as written.
    file_order = {u: [i for uu, i, _, _ in sorted(rows, key=lambda x: (x[0], x[3])) if uu == u] for u in range(40)}
    assert any(
        list(names_a[list(tr)]) + [names_a[v], names_a[te]] != file_order[u] for u, (tr, v, te) in split_a.items()
    )


def test_half_stars_reach_the_split(tmp_path):
    rows = random_log(2, users=20, items=30, per_user=8)
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in rows))
    _, split = protocol.load_split(protocol.DataConfig(data=str(path)))
    seen = np.concatenate([split.train.ratings[split.train.items >= 0], split.test.target_ratings])
    assert 0.5 in seen and 2.5 in seen  # never clipped to 1 or rounded


# ----------------------------------------------------------------------------- datasets by name


def test_named_dataset_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNELAB_DATA_URL", "http://127.0.0.1:9")  # the discard port: refused at once
    with pytest.raises(DataError) as err:
        ratings.load("ml-1m")
    message = str(err.value)
    assert "\n" not in message
    assert f"ml-1m is not in {tmp_path / 'cache' / 'ml-1m' / 'ratings.dat'} and could not be downloaded" in message
    assert "put ratings.dat from https://files.grouplens.org/datasets/movielens/ml-1m.zip there" in message
    # Through the config every model uses, it is the same line as a ConfigError.
    with pytest.raises(ConfigError, match="ml-100k is not in .*u.data and could not be downloaded"):
        protocol.load_split(protocol.DataConfig(data="ml-100k"))


def toy_archive(tmp_path, rows, name="toy"):
    archive = tmp_path / "mirror" / f"{name}.zip"
    archive.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{name}/u.data", "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows))
    return archive


def test_download_is_checked_extracted_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNELAB_DATA_URL", raising=False)
    rows = random_log(3, users=10, items=20, per_user=5)
    archive = toy_archive(tmp_path, rows)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    toy = ratings.Dataset("toy", archive.as_uri(), "toy/u.data", "tsv", md5, len(rows))
    cache = tmp_path / "cache"
    data = ratings.load_named(toy, cache)
    assert (cache / "toy" / "u.data").is_file() and len(data.users) == len(rows)
    archive.unlink()  # the cached file is read without the archive
    assert np.array_equal(ratings.load_named(toy, cache).items, data.items)

    # A corrupt download is refused and nothing is cached.
    bad = toy_archive(tmp_path, rows[:-1], name="bad")
    wrong = ratings.Dataset("bad", bad.as_uri(), "bad/u.data", "tsv", md5, len(rows))
    with pytest.raises(DataError, match=f"is not the published {md5}"):
        ratings.load_named(wrong, cache)
    assert not (cache / "bad" / "u.data").exists()


def test_a_cached_file_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path))
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("".join(f"{u}\t{i}\t4\t1\n" for u, i, _, _ in ROWS))
    with pytest.raises(DataError, match="6 interactions where ml-100k has 100000; it is not the published file"):
        ratings.load("ml-100k")


# ----------------------------------------------------------------------------- bad input


def one_user(target, n_items=12, context=(0,)):
    items = np.array([list(context)])
    seqs = protocol.Sequences(items, np.full(items.shape, 4.0, np.float32), np.array([len(context)]), np.array([0]))
    return protocol.Heldout(seqs, np.array([target]), np.array([5.0]), None), np.ones(n_items, dtype=bool)


def test_nonfinite_scores_count_against_the_model_and_are_counted():
    held, vocabulary = one_user(target=5)
    base = np.arange(12, dtype=float)[::-1].copy()  # item k scores 11 - k: items 1-4 beat the target 5
    ndcg, mrr = m.split_metric(m.TEST, m.NDCG), m.split_metric(m.TEST, m.MRR)
    count = m.split_metric(m.TEST, m.NONFINITE_SCORES)

    def run(scores):
        return protocol.evaluate(lambda ctx: scores[None, :], held, vocabulary, m.TEST)

    clean = run(base)
    assert clean[ndcg] == pytest.approx(1 / np.log2(4 + 2)) and clean[count] == 0
    above = base.copy()
    above[[1, 2]] = np.nan  # two items that outranked the target lose their scores
    assert run(above)[ndcg] == clean[ndcg] and run(above)[count] == 2  # no lift (it was 1/log2(4) before)
    below = base.copy()
    below[[8, 9]] = [np.inf, -np.inf]  # two that did not: now ahead of the target
    assert run(below)[ndcg] == pytest.approx(1 / np.log2(6 + 2)) and run(below)[count] == 2
    nan_target = base.copy()
    nan_target[5] = np.nan  # the target itself: last of the 11 rankable items (item 0 is the context)
    assert run(nan_target)[mrr] == pytest.approx(1 / 11)
    excluded_nan = base.copy()
    excluded_nan[0] = np.nan  # an excluded item's score is never looked at
    assert run(excluded_nan)[count] == 0 and run(excluded_nan)[ndcg] == clean[ndcg]


def test_a_catalogue_smaller_than_ten_is_one_clear_error(tmp_path):
    path = tmp_path / "small.data"
    path.write_text("".join(f"{u}\t{i}\t4\t{(i + u) % 8}\n" for u in range(5) for i in range(8)))
    with pytest.raises(ConfigError, match=r"8 items occur in training; ranking @10 needs at least 10") as err:
        protocol.load_split(protocol.DataConfig(data=str(path)))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="a catalogue of 5 items cannot fill a top 10"):
        protocol.top_n(np.zeros((2, 5)))


def test_a_target_repeated_from_the_history_is_a_counted_miss():
    """The documented rule (protocol.py, "Bad input"): the context stays excluded, the target too."""
    held, vocabulary = one_user(target=3, context=(0, 3))
    scores = np.zeros(12)
    scores[3] = 100.0  # a model that would re-recommend it first still earns nothing
    got = protocol.evaluate(lambda ctx: scores[None, :], held, vocabulary, m.TEST)
    assert got[m.split_metric(m.TEST, m.HR)] == 0.0 and got[m.split_metric(m.TEST, m.REPEATED_TARGETS)] == 1
    fresh, _ = one_user(target=4, context=(0, 3))
    got = protocol.evaluate(lambda ctx: scores[None, :], fresh, vocabulary, m.TEST)
    assert got[m.split_metric(m.TEST, m.REPEATED_TARGETS)] == 0


# ----------------------------------------------------------------------------- memory


def dense_fit(cfg, split):
    """The item-item baselines as they were before the sparse rewrite: dense users x items and
    items x items arrays throughout (the reference the sparse path must reproduce exactly)."""
    train, n_items = split.train, split.n_items

    def matrix(seqs):
        x = np.zeros((seqs.count, n_items), dtype=np.float32)
        rows, cols = np.nonzero((seqs.items >= 0) & (seqs.ratings >= cfg.min_rating))
        x[rows, seqs.items[rows, cols]] = 1.0
        return x

    x = matrix(train)
    if cfg.method == "ease":
        gram = (x.T @ x).astype(np.float64)
        gram[np.diag_indices(n_items)] += cfg.l2
        p = np.linalg.inv(gram)
        weights = (p / -np.diag(p)).astype(np.float32)
        weights[np.diag_indices(n_items)] = 0.0
        return lambda ctx: matrix(ctx) @ weights
    if cfg.cooccurrence == "history":
        co = x.T @ x
        norms = np.sqrt(np.diag(co))
    else:
        counts = np.bincount(train.items[train.items >= 0], minlength=n_items).astype(np.float64)
        follows = (train.items[:, :-1] >= 0) & (train.items[:, 1:] >= 0) & (train.ratings[:, 1:] >= cfg.min_rating)
        co = np.zeros((n_items, n_items), dtype=np.float32)
        np.add.at(co, (train.items[:, :-1][follows], train.items[:, 1:][follows]), 1.0)
        norms = np.sqrt(counts)
    sim = co / (norms[:, None] * norms[None, :] + cfg.shrinkage + 1e-9)
    sim[np.diag_indices(n_items)] = 0.0
    weakest = np.argpartition(-sim, cfg.neighbours, axis=1)[:, cfg.neighbours :]
    np.put_along_axis(sim, weakest, 0.0, axis=1)
    sim = sim.astype(np.float32)

    def score(ctx):
        out = np.zeros((ctx.count, n_items), dtype=np.float32)
        for k in range(cfg.recent):
            pos = ctx.lengths - 1 - k
            item = ctx.items[np.arange(ctx.count), np.maximum(pos, 0)]
            rated = ctx.ratings[np.arange(ctx.count), np.maximum(pos, 0)] >= cfg.min_rating
            weight = np.where((pos >= 0) & rated, cfg.decay**k, 0.0).astype(np.float32)
            out += weight[:, None] * sim[np.maximum(item, 0)]
        return out

    return score


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "ease", "l2": 20.0},
        {"method": "ease", "min_rating": 3.0},
        {"method": "itemknn", "neighbours": 15},
        {"method": "itemknn", "cooccurrence": "next", "recent": 3, "min_rating": 2.5, "neighbours": 10},
    ],
)
def test_sparse_baselines_reproduce_the_dense_ones_exactly(tmp_path, settings):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in random_log(5))
    )
    cfg = baselines.BaselineConfig(data=str(path), **settings)
    _, split = protocol.load_split(cfg)
    sparse_fn, dense_fn = baselines.fit(cfg, split), dense_fit(cfg, split)
    assert np.array_equal(sparse_fn(split.valid.context), dense_fn(split.valid.context))
    for held in (split.valid, split.test):
        # Small chunks: the chunked evaluation gives the figures of one pass over all users.
        got = protocol.evaluate(sparse_fn, held, split.vocabulary, m.TEST, chunk=7)
        want = protocol.evaluate(dense_fn, held, split.vocabulary, m.TEST)
        assert got == want and got[m.split_metric(m.TEST, m.HR)] > 0


def test_ease_past_its_memory_limit_is_one_clear_line():
    # 30 users: the refusal is about the catalogue; generating histories for more users is wasted time
    cfg = {"method": "ease", "synthetic_users": 30, "synthetic_items": 2000, "max_memory_gb": 0.05}
    with pytest.raises(ConfigError, match=r"2,000 items needs about 0\.1 GB .* above max_memory_gb=0\.05") as err:
        baselines.check(cfg)
    assert "itemknn" in str(err.value) and "\n" not in str(err.value)
    baselines.check({**cfg, "max_memory_gb": 1.0})  # under the limit it fits
