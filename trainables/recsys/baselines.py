"""The recommenders a reviewer asks for, fitted in closed form on the same split as every model.

random       uniform scores
popularity   training interaction counts
toprated     shrunk mean rating: (sum + shrinkage x global mean) / (count + shrinkage)
itemknn      cosine item-item similarity (shrunk, top `neighbours` per item) from co-occurrence in a
             history, or (`cooccurrence=next`) from one item directly following the other; the
             user's `recent` last items vote with weights decay^0, decay^1, ...
ease         EASE (Steck 2019): B = I - P / diag(P), P = (X'X + l2 I)^-1; score = x_user B; the dense
             items x items inverse is refused past `max_memory_gb` (20 bytes x items^2)

Memory grows with the interactions: the user-item matrix is sparse, item-kNN's similarity is
computed a block of items at a time and kept sparse (its top neighbours), and scores exist for
one chunk of users at a time (protocol.evaluate).

Each is a Tune trainable of one iteration: it fits, reports the validation figures (`score` among
them) and is done; `test()` gives the test figures, called once by the driver after selection. A
fit is deterministic given the config, so a checkpoint holds the config alone and a restore refits.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import ray.tune
from scipy import sparse

from trainables import metrics as m
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.recsys import protocol

METHODS = ("random", "popularity", "toprated", "itemknn", "ease")


@dataclasses.dataclass(frozen=True)
class BaselineConfig(protocol.DataConfig):
    method: str = "popularity"
    """random, popularity, toprated, itemknn or ease."""
    shrinkage: float = 10.0
    """toprated: pseudo-ratings at the global mean; itemknn: added to the cosine's denominator."""
    neighbours: int = 100
    """itemknn: most similar items kept per item."""
    cooccurrence: str = "history"
    """itemknn: history (both items in one history) or next (j directly follows i: a sequential kNN)."""
    recent: int = 10
    """itemknn: the user's most recent items that vote."""
    decay: float = 0.8
    """itemknn: weight of the k-th most recent item is decay^k (1: all recent items equal)."""
    l2: float = 200.0
    """ease: ridge penalty on the item-item weights."""
    min_rating: float = 0.0
    """itemknn and ease: count only interactions rated at least this (0: every interaction)."""
    max_memory_gb: float = 8.0
    """ease: refuse (one line, before fitting) when its dense item-item inverse would need more."""
    seed: int = 0
    """Seeds the random recommender."""
    iterations: int = 1
    """A closed-form fit is one iteration."""
    checkpoint_every: int = 1
    """Checkpoints hold the config only (a restore refits)."""

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.cooccurrence not in ("history", "next"):
            raise ValueError(f"cooccurrence must be history or next, got {self.cooccurrence!r}")
        check_range(self, "[1, inf)", "neighbours recent iterations checkpoint_every")
        check_range(self, "[0, inf)", "shrinkage min_rating")
        check_range(self, "(0, inf)", "l2 max_memory_gb")
        check_range(self, "(0, 1]", "decay")


def parse(config: dict) -> BaselineConfig:
    return from_dict(BaselineConfig, config, config.get("method", "baseline"))


def check(config: dict) -> BaselineConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    _, split = protocol.load_split(cfg)
    check_memory(cfg, split.n_items)
    return cfg


def interaction_matrix(seqs: protocol.Sequences, n_items: int, min_rating: float = 0.0) -> sparse.csr_matrix:
    """(S, I) sparse float32, 1 where the row's history holds the item (rated >= min_rating)."""
    keep = seqs.flat_ratings >= min_rating
    rows, cols = seqs.row_of()[keep], seqs.flat_items[keep]
    x = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(seqs.count, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0  # an item twice in a history is still one interaction
    return x


def ease_bytes(n_items: int) -> int:
    """Peak memory of EASE's fit: the dense Gram matrix and its inverse (float64), the weights (float32)."""
    return 20 * n_items**2


def check_memory(cfg: "BaselineConfig", n_items: int) -> None:
    """EASE inverts a dense items x items matrix: refuse, naming the estimate and the fix, rather
    than let the machine swap or the trial die of memory."""
    if cfg.method == "ease" and ease_bytes(n_items) > cfg.max_memory_gb * 2**30:
        raise ConfigError(
            f"ease: the dense item-item inverse for {n_items:,} items needs about {ease_bytes(n_items) / 2**30:.1f} GB "
            f"(20 bytes x items^2), above max_memory_gb={cfg.max_memory_gb:g}: raise max_memory_gb on a machine "
            "with the memory, keep fewer items, or use itemknn (sparse)"
        )


def fit(cfg: BaselineConfig, split: protocol.Split):
    """The fitted recommender: a function (context Sequences) -> (U, I) scores.

    Training data stays sparse (memory grows with the interactions); each call scores one chunk
    of users, so no users x items array exists beyond a chunk."""
    train, n_items = split.train, split.n_items
    counts = np.bincount(train.flat_items, minlength=n_items).astype(np.float64)
    if cfg.method == "random":
        seed = cfg.seed
        return lambda ctx: np.random.default_rng([seed, ctx.count, int(ctx.users.sum())]).random((ctx.count, n_items))
    if cfg.method == "popularity":
        return lambda ctx: np.broadcast_to(counts, (ctx.count, n_items))
    if cfg.method == "toprated":
        sums = np.bincount(train.flat_items, weights=train.flat_ratings, minlength=n_items)
        prior = train.flat_ratings.mean()
        means = (sums + cfg.shrinkage * prior) / (counts + cfg.shrinkage)
        return lambda ctx: np.broadcast_to(means, (ctx.count, n_items))
    check_memory(cfg, n_items)
    x = interaction_matrix(train, n_items, cfg.min_rating)  # (S, I) sparse
    if cfg.method == "ease":
        gram = (x.T @ x).toarray().astype(np.float64)  # exact counts: float32 holds integers to 2^24
        gram[np.diag_indices(n_items)] += cfg.l2
        p = np.linalg.inv(gram)
        del gram
        p /= -np.diag(p)
        weights = p.astype(np.float32)  # (I, I)
        del p
        weights[np.diag_indices(n_items)] = 0.0
        return lambda ctx: interaction_matrix(ctx, n_items, cfg.min_rating).toarray() @ weights
    sim = knn_similarity(cfg, train, x, counts, n_items)  # (I, I) sparse, `neighbours` per row

    def score(ctx: protocol.Sequences) -> np.ndarray:
        out = np.zeros((ctx.count, n_items), dtype=np.float32)
        if not len(ctx.flat_items):
            return out
        for k in range(cfg.recent):  # the k-th most recent item of every user at once
            has = ctx.lengths - 1 - k >= 0
            at = np.where(has, ctx.offsets[1:] - 1 - k, 0)  # flat index of that item (0: none)
            weight = np.where(has & (ctx.flat_ratings[at] >= cfg.min_rating), cfg.decay**k, 0.0).astype(np.float32)
            out += weight[:, None] * sim[np.where(has, ctx.flat_items[at], 0)].toarray()
        return out

    return score


def knn_similarity(cfg: BaselineConfig, train, x: sparse.csr_matrix, counts: np.ndarray, n_items: int):
    """(I, I) sparse float32 shrunk cosine, the `neighbours` strongest per row, computed a block of
    rows at a time so only a block of the dense items x items matrix ever exists."""
    if cfg.cooccurrence == "history":
        co = x.T.tocsr()  # (I, S); co[rows] @ x gives co-occurrence counts of those rows
        norms = np.sqrt(np.asarray(x.sum(0)).ravel().astype(np.float32))  # sqrt of the Gram diagonal
    else:  # co[i, j]: how often j (rated >= min_rating) directly follows i
        row = train.row_of()
        follows = (row[:-1] == row[1:]) & (train.flat_ratings[1:] >= cfg.min_rating)
        prev, nxt = train.flat_items[:-1][follows], train.flat_items[1:][follows]
        co = sparse.csr_matrix((np.ones(len(prev), np.float32), (prev, nxt)), shape=(n_items, n_items))
        co.sum_duplicates()
        norms = np.sqrt(counts)
    block = max(1, protocol.EVAL_CELLS // max(n_items, 1))
    parts = []
    for lo in range(0, n_items, block):
        rows = np.arange(lo, min(lo + block, n_items))
        dense = (co[rows] @ x).toarray() if cfg.cooccurrence == "history" else co[rows].toarray()
        sim = dense / (norms[rows, None] * norms[None, :] + cfg.shrinkage + 1e-9)
        sim[np.arange(len(rows)), rows] = 0.0
        if cfg.neighbours < n_items:
            weakest = np.argpartition(-sim, cfg.neighbours, axis=1)[:, cfg.neighbours :]
            np.put_along_axis(sim, weakest, 0.0, axis=1)
        parts.append(sparse.csr_matrix(sim.astype(np.float32)))
    return sparse.vstack(parts, format="csr")


# The strong baselines reported beside every recommender trial where they are cheap (catalogues up to
# REFERENCE_MAX_ITEMS): each picked on the validation score from a small grid, then measured on the
# requested part. Tuned by Optuna (platform.compare, platform.tune ease/itemknn) they do better still.
REFERENCE_GRIDS = {
    "ease": [{"l2": l2} for l2 in (50.0, 200.0, 500.0, 1000.0)],
    "itemknn": [{"cooccurrence": c, "recent": r} for c in ("history", "next") for r in (5, 20)],
}
REFERENCE_MAX_ITEMS = 5000


def reference(split: protocol.Split, seed: int, part: str = m.VALID) -> dict:
    """Popularity and random, and on catalogues up to REFERENCE_MAX_ITEMS items also EASE and
    item-kNN (each selected on the validation score from REFERENCE_GRIDS), on the validation (or
    test) users, reported beside a model as fixed reference points ("baseline/<name>/...")."""
    held = split.valid if part == m.VALID else split.test
    figures = {}
    for method in ("popularity", "random"):
        figures[method] = protocol.evaluate(
            fit(BaselineConfig(method=method, seed=seed), split), held, split.vocabulary, part
        )
    if split.n_items <= REFERENCE_MAX_ITEMS:
        for method, grid in REFERENCE_GRIDS.items():
            fitted = [fit(BaselineConfig(method=method, **settings), split) for settings in grid]
            valid = [protocol.evaluate(score, split.valid, split.vocabulary, m.VALID) for score in fitted]
            best = int(np.argmax([v[protocol.score_metric(split)] for v in valid]))
            figures[method] = (
                valid[best] if part == m.VALID else protocol.evaluate(fitted[best], held, split.vocabulary, part)
            )
    out = {}
    for method, values in figures.items():
        if part == m.VALID:
            values[m.SCORE] = values[protocol.score_metric(split)]
        out.update({m.baseline_metric(method, k): v for k, v in values.items() if not k.endswith("/" + m.USERS)})
    return out


class BaselineTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        self.cfg = parse(config)
        _, self.split = protocol.load_split(self.cfg)
        self.score_fn = fit(self.cfg, self.split)

    def step(self) -> dict:
        figures = protocol.evaluate(self.score_fn, self.split.valid, self.split.vocabulary, m.VALID)
        done = self.iteration + 1 >= self.cfg.iterations
        return {**figures, m.SCORE: figures[protocol.score_metric(self.split)], "done": done}

    def test(self) -> dict:
        """The test figures: called once, on the selected trial, by the driver."""
        return protocol.evaluate(self.score_fn, self.split.test, self.split.vocabulary, m.TEST, per_user=True)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        (Path(checkpoint_dir) / "config.json").write_text(json.dumps(to_dict(self.cfg)))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        pass  # the fit is a function of the config, which the trial already has
