"""Batch active-learning strategies that need no learning (numpy): the baselines a learned policy
must beat, and the lookahead oracle as a ceiling. Each picks K pool positions of an
envs/active.Learner at once; `update(gain)` tells a strategy what its last batch brought.

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

    def update(self, gain):
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

    def update(self, gain):
        pass


class KMeansDiversity:
    """K-means with K clusters over the unlabelled pool; the point nearest each centre."""

    def select(self, learner, k, rng):
        free = _open(learner)
        x = learner.xp[free]
        fit = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31))).fit(x)
        d = ((x[:, None, :] - fit.cluster_centers_[None, :, :]) ** 2).sum(-1)  # (n, k)
        chosen = []
        for c in range(k):
            order = np.argsort(d[:, c])
            chosen.append(next(i for i in order if i not in chosen))
        return free[np.asarray(chosen)]

    def update(self, gain):
        pass


class Coreset:
    """k-center greedy (Sener & Savarese): the unlabelled point farthest from the labelled set and
    the points picked so far, K times."""

    def select(self, learner, k, rng):
        dist = learner.distance_to_labelled().copy()
        dist[learner.labelled] = -1
        chosen = []
        for _ in range(k):
            i = int(np.argmax(dist))
            chosen.append(i)
            dist = np.minimum(dist, np.sqrt(((learner.xp - learner.xp[i]) ** 2).sum(1)))
            dist[learner.labelled] = -1
            dist[chosen] = -1
        return np.asarray(chosen)

    def update(self, gain):
        pass


class Badge:
    """BADGE (Ash et al. 2020): k-means++ seeding over the gradient embeddings of the last layer,
    (p - onehot(prediction)) outer [x, 1]: uncertain and diverse at once."""

    def select(self, learner, k, rng):
        free = _open(learner)
        p = learner.proba[free]
        grad = p - np.eye(learner.classes)[p.argmax(1)]  # (n, C)
        x = np.hstack([learner.xp[free], np.ones((len(free), 1))])  # (n, D + 1)
        emb = (grad[:, :, None] * x[:, None, :]).reshape(len(free), -1)  # (n, C * (D + 1))
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

    def update(self, gain):
        pass


class Bandit:
    """ALBL-style (Hsu & Lin 2015): EXP3 over strategies, rewarded by each batch's validation gain."""

    def __init__(self, gamma: float = 0.2):
        self.arms = [Random(), Uncertainty("margin"), KMeansDiversity(), Coreset()]
        self.weights = np.ones(len(self.arms))
        self.gamma = gamma
        self.last: tuple[int, float] | None = None

    def probabilities(self) -> np.ndarray:
        w = self.weights / self.weights.sum()
        return (1 - self.gamma) * w + self.gamma / len(self.arms)

    def select(self, learner, k, rng):
        p = self.probabilities()
        arm = int(rng.choice(len(self.arms), p=p))
        self.last = (arm, p[arm])
        return self.arms[arm].select(learner, k, rng)

    def update(self, gain):
        arm, p = self.last
        reward = float(np.clip(0.5 + 10 * gain, 0, 1))  # a gain of +-5 points maps to [0, 1]
        self.weights[arm] *= math.exp(self.gamma * reward / (p * len(self.arms)))
        self.weights /= self.weights.max()


@dataclasses.dataclass
class Oracle:
    """Lookahead on the validation set: of `tries` candidate batches (from the other strategies and
    at random), the one whose labels raise validation accuracy most. A ceiling, not a strategy."""

    tries: int = 8

    def select(self, learner, k, rng):
        proposals = [s.select(learner, k, rng) for s in (Uncertainty("margin"), Badge(), Coreset(), KMeansDiversity())]
        while len(proposals) < self.tries:
            proposals.append(Random().select(learner, k, rng))
        best, best_acc = proposals[0], -1.0
        for batch in proposals:
            acc = learner.valid_accuracy_with(batch)
            if acc > best_acc:
                best, best_acc = batch, acc
        return best

    def update(self, gain):
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
    "oracle": Oracle,
}


def episode(cfg: active.ActiveConfig, strategy, seed: int) -> list[tuple[int, float, float]]:
    """One run of `strategy` on the split of `seed`: the curve [(labels, valid acc, test acc)]."""
    learner = active.Learner(cfg, seed)
    rng = np.random.default_rng([seed, 5])
    bought = 0
    while bought < cfg.budget and (~learner.labelled).any():
        k = min(cfg.batch, cfg.budget - bought, int((~learner.labelled).sum()))
        before = learner.valid_acc
        learner.label(np.asarray(strategy.select(learner, k, rng)))
        strategy.update(learner.valid_acc - before)
        bought += k
    return learner.curve


@functools.lru_cache(maxsize=64)
def full_accuracy(cfg: active.ActiveConfig, seed: int) -> float:
    """Test accuracy of the classifier trained on the whole pool of the split."""
    learner = active.Learner(cfg, seed)
    learner.label(np.arange(len(learner.split.pool)))
    return learner.test_acc


def summarise(curve: list[tuple[int, float, float]], full: float, start: int, split: int = 2) -> dict:
    """Figures of one curve; `split` 2 reads test accuracy, 1 validation accuracy."""
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
