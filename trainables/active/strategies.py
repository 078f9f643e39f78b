"""Batch active-learning strategies that need no learning (numpy): the baselines a learned policy
must beat, a self-training (semi-supervised) baseline, and the lookahead oracle (ceiling). Each
picks K pool positions of an envs/active.Learner at once; `update(learner, batch)` shows it the
retrained learner after its batch. No strategy reads a test or validation label.

Evaluation (`episode`, `summarise`) is shared by every strategy, the learned ones included: the
test-accuracy learning curve, its area normalised to [0, 1], accuracy at fixed budgets and the
labels needed to reach 0.9 x the accuracy of the classifier trained on the whole pool.
"""

import dataclasses
import functools
import math

import numpy as np
from sklearn.cluster import KMeans

from envs import active

BUDGET_POINTS = (50, 100, 200)  # labels bought after the start set, for accuracy@budget


def _open(learner: active.Learner) -> np.ndarray:
    return np.flatnonzero(~learner.labelled)


class Random:
    def select(self, learner, k, rng):
        return rng.choice(_open(learner), k, replace=False)

    def update(self, learner, batch):
        pass


@dataclasses.dataclass
class Uncertainty:
    """Top-K by least confidence, margin or entropy."""

    kind: str = "margin"

    def select(self, learner, k, rng):
        free = _open(learner)
        if self.kind == "margin":
            order = np.argsort(learner.margin()[free], kind="stable")
        elif self.kind == "entropy":
            order = np.argsort(-learner.entropy()[free], kind="stable")
        else:
            order = np.argsort(-learner.least_confidence()[free], kind="stable")
        return free[order[:k]]

    def update(self, learner, batch):
        pass


class KMeansDiversity:
    """K-means diversity that stays sensible at K = 1, with TypiClust's cluster choice (Hacohen et
    al. 2022): k-means with L + K clusters over the whole pool (L labelled points), then, from the K
    largest clusters holding no labelled point (then the least covered ones), the unlabelled point
    nearest each centre. Plain k-means with K clusters would, at K = 1, pick the point nearest the
    pool mean batch after batch. Works on the standardised features (model-free)."""

    def select(self, learner, k, rng):
        n_clusters = min(learner.labels + k, len(learner.xp))
        fit = KMeans(n_clusters=n_clusters, n_init=1, random_state=int(rng.integers(2**31))).fit(learner.xp)
        sizes = np.bincount(fit.labels_, minlength=n_clusters)
        covered = np.bincount(fit.labels_[learner.labelled], minlength=n_clusters)
        free = ~learner.labelled
        chosen: list[int] = []
        for c in np.lexsort((-sizes, covered)):  # uncovered first, then by size, largest first
            members = np.flatnonzero((fit.labels_ == c) & free)
            if len(members):
                d = ((learner.xp[members] - fit.cluster_centers_[c]) ** 2).sum(1)
                chosen.append(int(members[np.argmin(d)]))
            if len(chosen) == k:
                break
        if len(chosen) < k:  # fewer non-empty clusters than K: fill at random
            rest = np.setdiff1d(_open(learner), chosen)
            chosen += rng.choice(rest, k - len(chosen), replace=False).tolist()
        return np.asarray(chosen)

    def update(self, learner, batch):
        pass


class Coreset:
    """k-center greedy (Sener & Savarese 2018) in the model's embedding (envs/active.Learner.embedding:
    the MLP's hidden layer; logistic regression's standardised inputs): the unlabelled point farthest
    from the labelled set and the points picked so far, K times."""

    def select(self, learner, k, rng):
        emb = learner.embedding()
        dist = learner.distance_to(learner.labelled, emb)
        dist[learner.labelled] = -1
        chosen = []
        for _ in range(k):
            i = int(np.argmax(dist))
            chosen.append(i)
            dist = np.minimum(dist, np.sqrt(((emb - emb[i]) ** 2).sum(1)))
            dist[learner.labelled] = -1
            dist[chosen] = -1
        return np.asarray(chosen)

    def update(self, learner, batch):
        pass


class Badge:
    """BADGE (Ash et al. 2020): k-means++ seeding over the gradient embeddings of the last layer,
    (p - onehot(prediction)) outer [h, 1] with h the model's embedding (the MLP's hidden layer;
    logistic regression's inputs): uncertain and diverse at once. The first centre is the largest
    gradient, as in the authors' code."""

    def select(self, learner, k, rng):
        free = _open(learner)
        p = learner.proba[free]
        grad = p - np.eye(learner.classes)[p.argmax(1)]  # (n, C)
        h = np.hstack([learner.embedding()[free], np.ones((len(free), 1))])  # (n, E + 1)
        emb = (grad[:, :, None] * h[:, None, :]).reshape(len(free), -1)  # (n, C * (E + 1))
        norms = (emb**2).sum(1)
        chosen = [int(np.argmax(norms))]
        d2 = ((emb - emb[chosen[0]]) ** 2).sum(1)
        for _ in range(k - 1):
            if d2.sum() <= 0:
                rest = np.setdiff1d(np.arange(len(free)), chosen)
                chosen.append(int(rng.choice(rest)))
                continue
            i = int(rng.choice(len(free), p=d2 / d2.sum()))
            chosen.append(i)
            d2 = np.minimum(d2, ((emb - emb[i]) ** 2).sum(1))
            d2[chosen] = 0
        return free[np.asarray(chosen)]

    def update(self, learner, batch):
        pass


class Bandit:
    """ALBL (Hsu & Lin 2015): EXP3 over strategies (random, margin, coreset, BADGE), rewarded as
    its authors do, by the importance-weighted accuracy of the retrained classifier on the labels the
    bandit has queried: each queried point weighs 1 / q, q the probability that the arms' mixture
    (p_arm) would have queried it (every arm's batch is computed; random queries any free point with
    probability K / free). The weighted accuracy is normalised by the total weight, so it lies in
    [0, 1]. No validation label is read."""

    def __init__(self, gamma: float = 0.2):
        self.arms = [Random(), Uncertainty("margin"), Coreset(), Badge()]
        self.weights = np.ones(len(self.arms))
        self.gamma = gamma
        self.last: tuple[int, float] | None = None
        self.queried: list[int] = []  # pool positions the bandit bought
        self.importance: list[float] = []  # 1 / q of each

    def probabilities(self) -> np.ndarray:
        w = self.weights / self.weights.sum()
        return (1 - self.gamma) * w + self.gamma / len(self.arms)

    def select(self, learner, k, rng):
        p = self.probabilities()
        free = _open(learner)
        batches = [arm.select(learner, k, rng) for arm in self.arms]
        arm = int(rng.choice(len(self.arms), p=p))
        self.last = (arm, p[arm])
        batch = batches[arm]
        q = np.full(len(batch), p[0] * k / len(free))  # arm 0 is random
        for a in range(1, len(self.arms)):
            q += p[a] * np.isin(batch, batches[a])
        self.queried += batch.tolist()
        self.importance += (1.0 / q).tolist()
        return batch

    def reward(self, learner) -> float:
        rows = learner.split.pool[np.asarray(self.queried)]
        right = learner.predict(learner.model, rows) == learner.y[rows]
        weights = np.asarray(self.importance)
        return float((weights * right).sum() / weights.sum())

    def update(self, learner, batch):
        arm, p = self.last
        self.weights[arm] *= math.exp(self.gamma * self.reward(learner) / (p * len(self.arms)))
        self.weights /= self.weights.max()


@dataclasses.dataclass
class Oracle:
    """The oracle (ceiling): of `tries` candidate batches (from margin, BADGE, coreset and at
    random), the one whose labels raise accuracy on the whole pool's true labels most, labels
    no strategy may see. A one-step lookahead that cheats: a reference above the strategies, not a
    strategy and not a proven maximum. It reads neither test nor validation labels."""

    tries: int = 8

    def select(self, learner, k, rng):
        proposals = [s.select(learner, k, rng) for s in (Uncertainty("margin"), Badge(), Coreset())]
        while len(proposals) < self.tries:
            proposals.append(Random().select(learner, k, rng))
        best, best_acc = proposals[0], -1.0
        for batch in proposals:
            acc = learner.pool_accuracy_with(batch)
            if acc > best_acc:
                best, best_acc = batch, acc
        return best

    def update(self, learner, batch):
        pass


STRATEGIES = {
    "random": Random,
    "least_confidence": lambda: Uncertainty("least_confidence"),
    "margin": lambda: Uncertainty("margin"),
    "entropy": lambda: Uncertainty("entropy"),
    "kmeans": KMeansDiversity,
    "coreset": Coreset,
    "badge": Badge,
    "albl": Bandit,
    "self_training": Random,
    "oracle": Oracle,
}
# What a strategy changes in the learner: the semi-supervised baseline queries at random and trains
# on the pool's confident pseudo-labels too (Luth et al. 2023: active learning must beat it).
LEARNER = {"self_training": {"self_training": True}}
LABELS = {"oracle": "oracle (ceiling)", "albl": "ALBL", "badge": "BADGE", "self_training": "self-training (random)"}


def label(name: str) -> str:
    """A strategy's name in tables and figures."""
    return LABELS.get(name, name)


def episode(cfg: active.ActiveConfig, strategy, seed: int) -> list[tuple[int, float, float, float]]:
    """One run of `strategy` on the split of `seed`: the curve [(labels, valid acc, test acc, test
    balanced acc)]."""
    learner = active.Learner(cfg, seed)
    rng = np.random.default_rng([seed, 5])
    bought = 0
    while bought < cfg.budget and (~learner.labelled).any():
        k = min(cfg.batch, cfg.budget - bought, int((~learner.labelled).sum()))
        batch = np.asarray(strategy.select(learner, k, rng))
        learner.label(batch)
        strategy.update(learner, batch)
        bought += k
    return learner.curve


def run(cfg: active.ActiveConfig, name: str, seed: int) -> list[tuple[int, float, float, float]]:
    """`episode` of the strategy called `name` of STRATEGIES, with its learner settings."""
    return episode(dataclasses.replace(cfg, **LEARNER.get(name, {})), STRATEGIES[name](), seed)


def full_accuracies(cfg: active.ActiveConfig, seed: int) -> tuple[float, float]:
    """Test accuracy and balanced accuracy of the classifier trained on the whole pool of the split
    (supervised; C by cross-validation on the pool). The pool does not depend on K, the start set
    or the budget: one fit serves them all."""
    return _full(dataclasses.replace(cfg, batch=1, budget=1, start=2, self_training=False), seed)


@functools.lru_cache(maxsize=64)
def _full(cfg: active.ActiveConfig, seed: int) -> tuple[float, float]:
    learner = active.Learner(cfg, seed)
    pool = learner.split.pool
    if cfg.classifier == "logreg":
        learner.c = active.choose_c(learner.x[pool], learner.y[pool], seed)
    learner.label(np.arange(len(pool)))
    return learner.test_acc, learner.test_balanced


def full_accuracy(cfg: active.ActiveConfig, seed: int) -> float:
    return full_accuracies(cfg, seed)[0]


def summarise(curve: list[tuple], full: float, start: int, split: int = 2) -> dict:
    """Figures of one curve; `split` 2 reads test accuracy, 3 test balanced accuracy, 1 validation
    accuracy."""
    labels = np.array([c[0] for c in curve], float)
    acc = np.array([c[split] for c in curve])
    span = labels[-1] - labels[0]
    aulc = float(np.trapezoid(acc, labels) / span) if span > 0 else float(acc[0])
    out = {"aulc": aulc, "final": float(acc[-1])}
    for b in BUDGET_POINTS:  # NaN for a budget the run did not reach
        reached = labels <= start + b
        out[f"acc@{b}"] = float(acc[reached][-1]) if reached.any() and labels[-1] >= start + b else math.nan
    hit = np.flatnonzero(acc >= 0.9 * full)
    out["labels_to_90"] = float(labels[hit[0]]) if len(hit) else math.nan
    return out
