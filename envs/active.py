"""Pool-based batch active learning as a gymnasium env.

A task (a dataset of envs/al_datasets: bundled real data, a user's CSV, or a generated
`make_classification` problem) is split, per seed, into a test set (20%: reported, never used for
a reward or a choice), a small validation set (`valid` points, 50 by default: what a practitioner
would hold out; only the learned policy's state and reward read it, never a fixed strategy or the
classifier's settings) and an unlabelled pool (the rest, at most `pool_limit`, 1,000), with a labelled
start set drawn from the pool (`start` points, one per class at least). A classifier (logistic
regression by default, a small MLP as an option, the same settings for every strategy) is
retrained after each batch of K labels. Logistic regression's C is chosen once per run by 3-fold
cross-validation on the start set (labels already bought: no test or validation label is used).

At each step the agent sees the classifier's state (sorted max-probabilities on a fixed probe
set of pool points, the fraction of the budget used, the position in the batch) and M candidate
points described by features (margin, entropy, least confidence, distance to the labelled set,
distance to the points already picked for this batch, density, cluster size), and picks one.
K picks make a batch; the classifier retrains and the reward is the change in validation
accuracy minus the change a random batch of the same size would have brought from the same state
(the research found raw rewards too noisy to learn from: the random batch is a control variate, and
an episode's return says how far the picks beat random). The episode ends when `budget` labels
have been bought or the pool is used up.

Resets reuse what does not change with the seed: the dataset is loaded and standardised once per
process (`load_task`), so a reset costs one split, the choice of C and one classifier fit.
"""

import dataclasses
import functools

import gymnasium as gym
import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPClassifier
from sklearn.semi_supervised import SelfTrainingClassifier

from envs import al_datasets
from envs.config import check_range, from_dict

GENERATED = al_datasets.GENERATED
DATASETS = al_datasets.NAMES  # and any CSV path (al_datasets.is_csv)
CLASSIFIERS = ("logreg", "mlp")
C_GRID = (1.0, 0.1, 10.0, 0.01, 100.0)  # logistic regression's C, in the order ties are broken
SELF_TRAINING_THRESHOLD = 0.9  # a pool point joins self-training with a predicted probability above this
PROBES = 32  # pool points whose sorted max-probabilities describe the classifier's state
STATE_FEATURES = PROBES + 3  # probes, budget used, position in batch, validation accuracy
CANDIDATE_FEATURES = 8
# How the M candidates are drawn: half the pool's most uncertain by margin and half at random (the
# policy is handed margin's ranking), or all uniformly from the unlabelled pool (it is not).
CANDIDATE_SAMPLING = ("margin_half", "uniform")


@dataclasses.dataclass(frozen=True)
class ActiveConfig:
    dataset: str = "digits"
    """One of DATASETS (envs/al_datasets.py: bundled real data, generated gen-*), or a CSV file:
    path/to/file.csv (label last) or path/to/file.csv:LABEL_COLUMN."""
    datasets: str = ""
    """Comma-separated datasets; each reset draws one of them uniformly (meta-training across tasks,
    e.g. for RLlib PPO). Empty: every episode is on `dataset`."""
    batch: int = 10
    """K: labels bought per batch (one retraining per batch)."""
    budget: int = 200
    """Labels bought in an episode, after the start set."""
    start: int = 20
    """Labelled start set (at least one per class); C is chosen on it."""
    valid: int = 50
    """Validation labels held out beside the pool (not counted in the budget): read only by the
    learned policy's state and reward. Training datasets may afford more."""
    candidates: int = 32
    """M: candidates per pick, drawn as `candidate_sampling` says."""
    candidate_sampling: str = "margin_half"
    """margin_half: half the M candidates are the pool's most uncertain by margin, half at random
    (the policy is handed margin's ranking); uniform: all M at random from the unlabelled pool."""
    classifier: str = "logreg"
    """logreg (fast; C by cross-validation on the start set) or mlp (one hidden layer of 32)."""
    self_training: bool = False
    """The classifier also learns from the pool's pseudo-labels predicted with probability above
    0.9 (scikit-learn's SelfTrainingClassifier): the semi-supervised baseline."""
    pool_limit: int = 1000
    """Pool points at most (the rest is dropped): keeps episodes comparable in cost."""
    center: bool = True
    """Reward = the batch's validation gain minus the gain of a random batch of the same size from
    the same state (one more fit per batch); False: the raw gain."""

    def __post_init__(self):
        check_range(self, "[1, inf)", "batch budget candidates pool_limit valid")
        check_range(self, "[2, inf)", "start")
        for name in (self.dataset, *self.names):
            al_datasets.check_name(name)
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be logreg or mlp, got {self.classifier!r}")
        if self.candidate_sampling not in CANDIDATE_SAMPLING:
            raise ValueError(f"candidate_sampling must be one of {', '.join(CANDIDATE_SAMPLING)}, "
                             f"got {self.candidate_sampling!r}")  # fmt: skip

    @property
    def names(self) -> tuple[str, ...]:
        """The datasets episodes are drawn from."""
        return tuple(d.strip() for d in self.datasets.split(",") if d.strip()) or (self.dataset,)


def parse(config: dict | None) -> ActiveConfig:
    """A ActiveConfig from env kwargs: unknown keys and bad values are one ConfigError naming them."""
    return from_dict(ActiveConfig, dict(config or {}), "active-learning env")


@functools.lru_cache(maxsize=32)
def load_task(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X standardised, y as 0..C-1): loaded once per process."""
    x, y = al_datasets.load(name)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)  # unsupervised preprocessing: uses no label
    return x, y


@dataclasses.dataclass(frozen=True)
class Split:
    pool: np.ndarray  # indices into the task's rows
    valid: np.ndarray
    test: np.ndarray
    start: np.ndarray  # positions in `pool` labelled at the start
    probes: np.ndarray  # positions in `pool` whose probabilities describe the state

    @staticmethod
    def make(cfg: ActiveConfig, seed: int) -> "Split":
        x, y = load_task(cfg.dataset)
        rng = np.random.default_rng([seed, 11])
        order = rng.permutation(len(y))
        n_test = len(y) // 5
        n_valid = min(cfg.valid, (len(y) - n_test) // 4)  # a small set never takes most of the pool
        test, valid, pool = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
        pool = pool[: cfg.pool_limit]
        classes = np.unique(y)
        first = [np.flatnonzero(y[pool] == c)[:1] for c in classes]  # one per class the pool has
        rest = rng.permutation(np.setdiff1d(np.arange(len(pool)), np.concatenate(first)))
        start = np.concatenate(first + [rest[: max(0, cfg.start - len(classes))]])
        return Split(pool, valid, test, np.sort(start), rng.choice(len(pool), min(PROBES, len(pool)), replace=False))


def make_classifier(kind: str, seed: int, c: float = 1.0):
    if kind == "mlp":  # alpha stays scikit-learn's default (1e-4): no search, the same for every strategy
        return MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=seed)
    return LogisticRegression(C=c, max_iter=300)


def choose_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Logistic regression's C of C_GRID with the best 3-fold cross-validated accuracy on (x, y), the
    labels bought so far (ties: the earlier in C_GRID); 1.0 when there are too few labels to fold."""
    if len(y) < 6 or len(np.unique(y)) < 2:
        return 1.0
    folds = list(KFold(3, shuffle=True, random_state=seed).split(x))
    scores = []
    for c in C_GRID:
        right = 0
        for train, held in folds:
            if len(np.unique(y[train])) < 2:  # a fold with one class: predict it
                right += int((y[held] == y[train][0]).sum())
                continue
            right += int((LogisticRegression(C=c, max_iter=300).fit(x[train], y[train]).predict(x[held]) ==
                          y[held]).sum())  # fmt: skip
        scores.append(right)
    return C_GRID[int(np.argmax(scores))]


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in `truth` of the fraction of that class predicted right."""
    classes = np.unique(truth)
    return float(np.mean([(predicted[truth == c] == c).mean() for c in classes]))


class Learner:
    """The labelled set, the classifier trained on it and what it predicts: the state every
    strategy and the env share."""

    def __init__(self, cfg: ActiveConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.x, self.y = load_task(cfg.dataset)
        self.split = Split.make(cfg, seed)
        self.classes = int(self.y.max()) + 1
        self.xp = self.x[self.split.pool]  # (P, D) pool features
        self.labelled = np.zeros(len(self.split.pool), bool)
        self.labelled[self.split.start] = True
        rows = self.split.pool[self.labelled]
        self.c = choose_c(self.x[rows], self.y[rows], seed) if cfg.classifier == "logreg" else 1.0
        # (labels, validation accuracy, test accuracy, test balanced accuracy)
        self.curve: list[tuple[int, float, float, float]] = []
        self.fit()

    @property
    def labels(self) -> int:
        return int(self.labelled.sum())

    def train(self, mask: np.ndarray):
        """A classifier trained on the pool points of `mask` (and, self-training, on the rest's
        pseudo-labels); None when the labels hold one class."""
        rows = self.split.pool[mask]
        if len(np.unique(self.y[rows])) < 2:
            return None
        model = make_classifier(self.cfg.classifier, self.seed, self.c)
        if not self.cfg.self_training:
            return model.fit(self.x[rows], self.y[rows])
        targets = np.where(mask, self.y[self.split.pool], -1)  # -1: unlabelled for scikit-learn
        return SelfTrainingClassifier(model, threshold=SELF_TRAINING_THRESHOLD).fit(self.xp, targets)

    def fit(self) -> None:
        self.model = self.train(self.labelled)
        if self.model is None:  # degenerate start: predict the one class
            only = self.y[self.split.pool[self.labelled]][0]
            self.proba = np.eye(self.classes)[np.full(len(self.xp), only)]
        else:
            self.proba = self._proba(self.model, self.xp)
        self.valid_acc = self.accuracy(self.model, self.split.valid)
        self.test_acc = self.accuracy(self.model, self.split.test)
        self.test_balanced = self.accuracy(self.model, self.split.test, balanced=True)
        self._cache: dict = {}  # uncertainty, embeddings and distances of this fit
        self.curve.append((self.labels, self.valid_acc, self.test_acc, self.test_balanced))

    def _proba(self, model, x: np.ndarray) -> np.ndarray:
        """(n, C) probabilities over every class (a class missing from the labels gets 0)."""
        out = np.zeros((len(x), self.classes))
        out[:, model.classes_] = model.predict_proba(x)
        return out

    def predict(self, model, rows: np.ndarray) -> np.ndarray:
        if model is None:
            return np.full(len(rows), self.y[self.split.pool[self.labelled]][0])
        return model.predict(self.x[rows])

    def accuracy(self, model, rows: np.ndarray, balanced: bool = False) -> float:
        truth, predicted = self.y[rows], self.predict(model, rows)
        return balanced_accuracy(truth, predicted) if balanced else float((predicted == truth).mean())

    def valid_accuracy_with(self, positions: np.ndarray) -> float:
        """Validation accuracy of a classifier trained with `positions` labelled too (state unchanged)."""
        mask = self.labelled.copy()
        mask[positions] = True
        return self.accuracy(self.train(mask), self.split.valid)

    def pool_accuracy_with(self, positions: np.ndarray) -> float:
        """Accuracy on the whole pool's true labels, hidden from every strategy, of a classifier
        trained with `positions` labelled too: only the oracle (ceiling) may ask."""
        mask = self.labelled.copy()
        mask[positions] = True
        return self.accuracy(self.train(mask), self.split.pool)

    def label(self, positions: np.ndarray) -> None:
        """Buys the labels of pool `positions` and retrains."""
        self.labelled[positions] = True
        self.fit()

    def embedding(self) -> np.ndarray:
        """(P, E) the model's representation of every pool point, the space coreset and BADGE work
        in: the MLP's hidden layer (ReLU activations); for logistic regression, whose only layer
        reads the standardised features, those features themselves."""
        if "embedding" not in self._cache:
            model = self.model
            if self.cfg.classifier == "mlp" and model is not None and not self.cfg.self_training:
                hidden = self.xp @ model.coefs_[0] + model.intercepts_[0]  # (P, 32)
                self._cache["embedding"] = np.maximum(hidden, 0)
            else:
                self._cache["embedding"] = self.xp
        return self._cache["embedding"]

    # ------------------------------------------------------------------ uncertainty and geometry

    def margin(self) -> np.ndarray:
        """(P,) top-1 minus top-2 probability: small = uncertain."""
        if "margin" not in self._cache:
            top = np.sort(self.proba, 1)
            self._cache["margin"] = top[:, -1] - top[:, -2]
        return self._cache["margin"]

    def margin_order(self) -> np.ndarray:
        """Pool positions from the most to the least uncertain by margin (once per fit)."""
        if "order" not in self._cache:
            self._cache["order"] = np.argsort(self.margin(), kind="stable")
        return self._cache["order"]

    def entropy(self) -> np.ndarray:
        if "entropy" not in self._cache:
            p = np.clip(self.proba, 1e-12, 1)
            self._cache["entropy"] = -(p * np.log(p)).sum(1) / np.log(self.classes)
        return self._cache["entropy"]

    def least_confidence(self) -> np.ndarray:
        return 1.0 - self.proba.max(1)

    def distance_to_labelled(self) -> np.ndarray:
        """(P,) distance of every pool point to the labelled set in the model's embedding (the space
        coreset and BADGE use; changes only with a fit)."""
        if "labelled" not in self._cache:
            self._cache["labelled"] = self.distance_to(self.labelled, self.embedding())
        return self._cache["labelled"]

    def embedding_scale(self) -> float:
        """The typical distance between neighbouring pool points in the embedding: the unit of the
        candidates' distance features. In the standardised features (logistic regression) it is the
        task's fixed scale; in the MLP's hidden layer, which moves with every fit, the median
        distance of a pool point to its nearest other pool point, once per fit."""
        if "scale" not in self._cache:
            emb = self.embedding()
            if emb is self.xp:
                self._cache["scale"] = self.geometry["scale"]
            else:
                sq = (emb**2).sum(1)
                d2 = sq[:, None] - 2 * emb @ emb.T + sq[None, :]  # (P, P)
                np.fill_diagonal(d2, np.inf)
                self._cache["scale"] = float(np.median(np.sqrt(np.maximum(d2.min(1), 0)))) + 1e-8
        return self._cache["scale"]

    def distance_to(self, mask: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        """(P,) Euclidean distance of every pool point to the nearest point of `mask` (inf if none), in
        the space of `points` (P, E): the standardised features by default."""
        points = self.xp if points is None else points
        if not mask.any():
            return np.full(len(points), np.inf)
        chosen = points[mask]
        d2 = (points**2).sum(1)[:, None] - 2 * points @ chosen.T + (chosen**2).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(1), 0))

    @property
    def geometry(self) -> dict:
        """Per pool point: density and k-means cluster size, from the task's geometry (computed once
        per task and process, not per split)."""
        g = task_geometry(self.cfg.dataset)
        rows = self.split.pool
        return {"density": g["density"][rows], "cluster_size": g["cluster_size"][rows], "scale": g["scale"]}


@functools.lru_cache(maxsize=16)
def task_geometry(name: str) -> dict:
    """Density (inverse mean distance to the 10 nearest points) and k-means (20) cluster size of every
    point of a task: label-free, so shared by every split."""
    x, _ = load_task(name)
    near = np.empty(len(x))
    sq = (x**2).sum(1)
    for lo in range(0, len(x), 1024):
        d2 = sq[lo : lo + 1024, None] - 2 * x[lo : lo + 1024] @ x.T + sq[None, :]
        near[lo : lo + 1024] = np.sqrt(np.maximum(np.sort(d2, 1)[:, 1:11], 0)).mean(1)
    clusters = KMeans(n_clusters=min(20, len(x)), n_init=1, random_state=0).fit_predict(x)
    scale = float(np.median(near)) + 1e-8
    return {"density": 1.0 / (1.0 + near / scale), "cluster_size": np.bincount(clusters)[clusters] / len(x),
            "scale": scale}  # fmt: skip


def candidate_features(learner: Learner, candidates: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """(M, CANDIDATE_FEATURES) in roughly [0, 1]: margin, entropy, least confidence, distance to the
    labelled set, distance to this batch's picks (both in the model's embedding, as coreset and
    BADGE measure them), density, cluster size (label-free, in the standardised features), already
    picked."""
    g = learner.geometry
    scale = learner.embedding_scale()
    emb = learner.embedding()  # (P, E)
    to_labelled = learner.distance_to_labelled()[candidates]
    batch_mask = np.zeros(len(learner.xp), bool)
    batch_mask[picked] = True
    if len(picked):  # (M, picked) distances only
        diff = emb[candidates][:, None, :] - emb[picked][None, :, :]
        to_batch = np.sqrt((diff**2).sum(-1)).min(1)
    else:
        to_batch = np.full(len(candidates), 4 * scale)
    return np.stack(
        [
            learner.margin()[candidates],
            learner.entropy()[candidates],
            learner.least_confidence()[candidates],
            np.minimum(to_labelled / (4 * scale), 1.0),
            np.minimum(to_batch / (4 * scale), 1.0),
            g["density"][candidates],
            np.minimum(g["cluster_size"][candidates] * 10, 1.0),
            batch_mask[candidates].astype(float),
        ],
        1,
    ).astype(np.float32)


def state_features(learner: Learner, position: int) -> np.ndarray:
    probes = np.sort(learner.proba[learner.split.probes].max(1))
    probes = np.pad(probes, (0, PROBES - len(probes)), constant_values=1.0)
    used = (learner.labels - len(learner.split.start)) / learner.cfg.budget
    return np.concatenate([probes, [used, position / learner.cfg.batch, learner.valid_acc]]).astype(np.float32)


def draw_candidates(learner: Learner, picked: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """M unlabelled, unpicked pool positions: margin_half, the M // 2 most uncertain by margin and
    the rest at random; uniform, all M at random."""
    free = ~learner.labelled
    free[picked] = False
    open_ = np.flatnonzero(free)
    if len(open_) <= m:
        return np.resize(open_, m)
    if learner.cfg.candidate_sampling == "uniform":
        return rng.choice(open_, m, replace=False)
    order = learner.margin_order()
    uncertain = order[free[order]][: m // 2]
    free[uncertain] = False
    return np.concatenate([uncertain, rng.choice(np.flatnonzero(free), m - len(uncertain), replace=False)])


class ActiveLearningEnv(gym.Env):
    """One active-learning run per episode; reset(seed) draws the dataset (of `datasets`), the split
    and the start set; options {"dataset": name, "split": seed} fix them."""

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None, **config):
        self.cfg = parse({**dict(env_config or {}), **config})
        m = self.cfg.candidates
        self.observation_space = gym.spaces.Box(0.0, 1.0, (STATE_FEATURES + m * CANDIDATE_FEATURES,), np.float32)
        self.action_space = gym.spaces.Discrete(m)
        for name in self.cfg.names:
            load_task(name)

    def _observe(self) -> np.ndarray:
        picked = np.asarray(self.picked, np.int64)
        self.offered = draw_candidates(self.learner, picked, self.cfg.candidates, self.np_random)
        feats = candidate_features(self.learner, self.offered, picked)
        return np.concatenate([state_features(self.learner, len(self.picked)), feats.ravel()]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        names = self.cfg.names
        dataset = options.get("dataset") or names[int(self.np_random.integers(len(names)))]
        split_seed = int(self.np_random.integers(2**31)) if options.get("split") is None else options["split"]
        cfg = self.cfg if dataset == self.cfg.dataset else dataclasses.replace(self.cfg, dataset=dataset)
        self.learner = Learner(cfg, split_seed)
        self.picked: list[int] = []
        self.bought = 0
        return self._observe(), {"split": split_seed, "dataset": dataset}

    def step(self, action):
        choice = int(self.offered[int(action)])
        repeat = choice in self.picked or self.learner.labelled[choice]
        if not repeat:
            self.picked.append(choice)
        reward, info = 0.0, {"pick": choice, "repeat": repeat}
        # a batch closes at K picks, at the budget, or when the pool has nothing left to pick
        remaining = int((~self.learner.labelled).sum())
        batch_full = len(self.picked) >= min(self.cfg.batch, self.cfg.budget - self.bought, remaining)
        if batch_full:
            before = self.learner.valid_acc
            control = 0.0
            if self.cfg.center:  # what a random batch would have brought from this state
                free = np.flatnonzero(~self.learner.labelled)
                batch = self.np_random.choice(free, len(self.picked), replace=False)
                control = self.learner.valid_accuracy_with(batch) - before
            self.learner.label(np.asarray(self.picked))
            self.bought += len(self.picked)
            gain = self.learner.valid_acc - before
            reward = gain - control
            self.picked = []
            info.update(valid_accuracy=self.learner.valid_acc, test_accuracy=self.learner.test_acc, gain=gain)
        terminated = self.bought >= self.cfg.budget or not (~self.learner.labelled).any()
        return self._observe(), float(reward), terminated, False, info
