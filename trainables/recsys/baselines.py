"""The recommenders a reviewer asks for, fitted in closed form on the same split as every model.

random       uniform scores
popularity   training interaction counts
toprated     shrunk mean rating: (sum + shrinkage x global mean) / (count + shrinkage)
itemknn      cosine item-item similarity (shrunk, top `neighbours` per item) from co-occurrence in a
             history, or (`cooccurrence=next`) from one item directly following the other; the
             user's `recent` last items vote with weights decay^0, decay^1, ...
ease         EASE (Steck 2019): B = I - P / diag(P), P = (X'X + l2 I)^-1; score = x_user B

Each is a Tune trainable of one iteration: it fits, reports the validation figures (`score` among
them) and is done; `test()` gives the test figures, called once by the driver after selection. A
fit is deterministic given the config, so a checkpoint holds the config alone and a restore refits.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import ray.tune

from trainables import metrics as m
from trainables.config import check_range, from_dict, to_dict
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
        check_range(self, "(0, inf)", "l2")
        check_range(self, "(0, 1]", "decay")


def parse(config: dict) -> BaselineConfig:
    return from_dict(BaselineConfig, config, config.get("method", "baseline"))


def check(config: dict) -> BaselineConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    protocol.load_split(cfg)
    return cfg


def interaction_matrix(seqs: protocol.Sequences, n_items: int, min_rating: float = 0.0) -> np.ndarray:
    """(S, I) float32 1 where the row's history holds the item (rated >= min_rating)."""
    x = np.zeros((seqs.count, n_items), dtype=np.float32)
    rows, cols = np.nonzero((seqs.items >= 0) & (seqs.ratings >= min_rating))
    x[rows, seqs.items[rows, cols]] = 1.0
    return x


def fit(cfg: BaselineConfig, split: protocol.Split):
    """The fitted recommender: a function (context Sequences) -> (U, I) scores."""
    train, n_items = split.train, split.n_items
    valid = train.items >= 0
    counts = np.bincount(train.items[valid], minlength=n_items).astype(np.float64)
    if cfg.method == "random":
        seed = cfg.seed
        return lambda ctx: np.random.default_rng([seed, ctx.count, int(ctx.users.sum())]).random((ctx.count, n_items))
    if cfg.method == "popularity":
        return lambda ctx: np.broadcast_to(counts, (ctx.count, n_items))
    if cfg.method == "toprated":
        sums = np.bincount(train.items[valid], weights=train.ratings[valid], minlength=n_items)
        prior = train.ratings[valid].mean()
        means = (sums + cfg.shrinkage * prior) / (counts + cfg.shrinkage)
        return lambda ctx: np.broadcast_to(means, (ctx.count, n_items))
    x = interaction_matrix(train, n_items, cfg.min_rating)  # (S, I)
    if cfg.method == "ease":
        gram = (x.T @ x).astype(np.float64)
        gram[np.diag_indices(n_items)] += cfg.l2
        p = np.linalg.inv(gram)
        weights = (p / -np.diag(p)).astype(np.float32)  # (I, I)
        weights[np.diag_indices(n_items)] = 0.0
        return lambda ctx: interaction_matrix(ctx, n_items, cfg.min_rating) @ weights
    # itemknn
    if cfg.cooccurrence == "history":
        co = x.T @ x  # (I, I) co-occurrence counts
        norms = np.sqrt(np.diag(co))
    else:  # co[i, j]: how often j (rated >= min_rating) directly follows i
        follows = (train.items[:, :-1] >= 0) & (train.items[:, 1:] >= 0) & (train.ratings[:, 1:] >= cfg.min_rating)
        co = np.zeros((n_items, n_items), dtype=np.float32)
        np.add.at(co, (train.items[:, :-1][follows], train.items[:, 1:][follows]), 1.0)
        norms = np.sqrt(counts)
    sim = co / (norms[:, None] * norms[None, :] + cfg.shrinkage + 1e-9)
    sim[np.diag_indices(n_items)] = 0.0
    if cfg.neighbours < n_items:
        weakest = np.argpartition(-sim, cfg.neighbours, axis=1)[:, cfg.neighbours :]
        np.put_along_axis(sim, weakest, 0.0, axis=1)
    sim = sim.astype(np.float32)

    def score(ctx: protocol.Sequences) -> np.ndarray:
        out = np.zeros((ctx.count, n_items), dtype=np.float32)
        for k in range(cfg.recent):  # the k-th most recent item of every user at once
            pos = ctx.lengths - 1 - k
            has = pos >= 0
            item = ctx.items[np.arange(ctx.count), np.maximum(pos, 0)]
            rated = ctx.ratings[np.arange(ctx.count), np.maximum(pos, 0)] >= cfg.min_rating
            weight = np.where(has & rated, cfg.decay**k, 0.0).astype(np.float32)
            out += weight[:, None] * sim[np.maximum(item, 0)]
        return out

    return score


def reference(split: protocol.Split, seed: int, part: str = m.VALID) -> dict:
    """Popularity and random on the validation (or test) users, reported beside a model as fixed
    reference points ("baseline/<name>/..."). The tuned baselines are their own models."""
    out = {}
    held = split.valid if part == m.VALID else split.test
    for method in ("popularity", "random"):
        cfg = BaselineConfig(method=method, seed=seed)
        figures = protocol.evaluate(fit(cfg, split), held, split.vocabulary, part)
        if part == m.VALID:
            figures[m.SCORE] = figures[protocol.score_metric(split)]
        out.update({m.baseline_metric(method, k): v for k, v in figures.items() if not k.endswith("/" + m.USERS)})
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
        return protocol.evaluate(self.score_fn, self.split.test, self.split.vocabulary, m.TEST)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        (Path(checkpoint_dir) / "config.json").write_text(json.dumps(to_dict(self.cfg)))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        pass  # the fit is a function of the config, which the trial already has
