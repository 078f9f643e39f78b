"""One evaluation protocol for every recommender: the data settings, the split into training,
validation and test, and full-ranking metrics computed in chunks.

Protocol (`split`):
  loo    real data: per user in time order, the last interaction is the test target, the one before
         it the validation target, the rest is training; users with fewer than 3 interactions are
         training only. The test context includes the validation interaction.
  time   a global time cut: the last `eval_fraction` of interactions (by timestamp) is the test
         period, the `eval_fraction` before it the validation period; a user's first interaction in
         a period is its target, everything before it the context; training is what precedes both.
  users  synthetic data: disjoint validation and test users (`eval_fraction` of users each), each
         evaluated on its last interaction; everyone's history up to it is training.
  auto   users on synthetic data, loo on a file.

Every recommender is scored the same way: a (users x items) score matrix per chunk of users (at
most EVAL_CELLS scores at once, so memory does not grow with the number of users); the user's
context items and every item that never occurs in training are excluded (the vocabulary is the
training data's); the target's rank among all remaining items gives HR@10, NDCG@10 and MRR (no
sampled negatives). On synthetic data the true expected rating of the top 10 is normalised so
that random is 0 and the oracle 1.

Bad input:
  - A NaN or infinite score counts against the model wherever it is (pessimistic): a non-finite
    target ranks last among the user's rankable items, a non-finite non-target ranks ahead of the
    target (left out, it would lift the target: the optimism this rule removes) and is never
    recommended (coverage). They are counted in `nonfinite_scores` (rankable items, all users).
  - A target the user already interacted with (it is in their context: a re-consumption) is a
    miss: the context is excluded from ranking whatever the target, since exempting only the
    target would tell the model which history item it is. Such users stay in the averages and
    are counted in `repeated_targets`. MovieLens holds one rating per (user, item): none occur.
  - Fewer than TOP_N items in the training vocabulary is a DataError: @10 metrics need 10.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from trainables import metrics as m
from trainables.config import ConfigError, check_range
from trainables.recsys import ratings
from trainables.recsys.ratings import MAX_RATING, MIN_RATING, DataError, Ratings

TOP_N = 10  # the cut-off of every @10 metric (metrics.HR, NDCG, COVERAGE)
LIKED = 4.0  # a target rated at least this is "liked"
STATE_DIM = 3  # running mean rating, last rating, log position; see `running_state`
SPLITS = ("auto", "loo", "time", "users")
EVAL_CELLS = 1 << 22  # scores held at once during evaluation: users per chunk = EVAL_CELLS // items


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data settings every recommender shares (subclassed by each model's config)."""

    data: str = "synthetic"
    """"synthetic" (generated with sequential structure and ground truth, cached), a public dataset by
    name (ml-100k, ml-1m, ml-20m, ml-latest-small: downloaded once into $TUNELAB_DATA or
    ~/.cache/tunelab) or the path of a ratings file."""
    data_format: str = "auto"
    """auto, tsv (u.data: user item rating timestamp), dat (ratings.dat, ::), movielens (ratings.csv),
    recbole (.inter) or goodreads."""
    synthetic_users: int = 943
    """Users in the synthetic data (default: MovieLens-100K's)."""
    synthetic_items: int = 1682
    """Items in the synthetic data (default: MovieLens-100K's); histories are at most half of it long."""
    data_seed: int = 0
    """Seed of the synthetic data and of the user split: the same for every trial, so trials compare."""
    extreme_ratings: bool = False
    """Map ratings 4-5 to 5 and 1-3 to 1, as the research tried."""
    user_fraction: float = 1.0
    """Keep this fraction of users (0.8 is the research's 80/20 subsample)."""
    split: str = "auto"
    """loo (leave-one-out: last = test, second last = validation), time (global time cut), users
    (disjoint validation and test users), auto (users on synthetic data, loo on a file)."""
    eval_fraction: float = 0.1
    """split=users: fraction of users in each of validation and test; split=time: fraction of
    interactions in each of the validation and test periods."""
    shuffle_order: bool = False
    """Shuffle the order of every training history (an ablation: what does order carry?)."""

    def __post_init__(self):
        if self.data_format not in ratings.FORMATS:
            raise ValueError(f"data_format must be one of {', '.join(ratings.FORMATS)}, got {self.data_format!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        check_range(self, "[10, inf)", "synthetic_users")
        check_range(self, "[20, inf)", "synthetic_items")
        check_range(self, "(0, 0.5)", "eval_fraction")


class Sequences:
    """Histories of `count` rows, stored ragged: row s is flat_items[offsets[s] : offsets[s + 1]], in
    time order, so memory grows with the interactions, not with rows x the longest history
    (MovieLens-20M: 20M interactions, but 138k users x 9,254 steps padded).

    `items` and `ratings` are the right-padded (S, L) view (padding -1 and 0), built on first use:
    for small data and for chunks of rows (`rows`); code that reads whole training sets of any
    size uses the flat arrays.
    """

    def __init__(self, items: np.ndarray, values: np.ndarray, lengths: np.ndarray, users: np.ndarray):
        """From the padded (S, L) form: row s holds `lengths[s]` valid steps, `values` their ratings
        (not named `ratings`: that is the module this file reads rating files with)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        valid = np.arange(np.shape(items)[1])[None, :] < lengths[:, None]
        self._set(np.asarray(items)[valid], np.asarray(values)[valid], lengths, users)

    @classmethod
    def ragged(cls, flat_items, flat_ratings, lengths, users) -> "Sequences":
        """From the flat form: row s is the next `lengths[s]` entries of flat_items/flat_ratings."""
        seqs = cls.__new__(cls)
        seqs._set(flat_items, flat_ratings, lengths, users)
        return seqs

    def _set(self, flat_items, flat_ratings, lengths, users) -> None:
        self.flat_items = np.asarray(flat_items, dtype=np.int64)  # (N,)
        self.flat_ratings = np.asarray(flat_ratings, dtype=np.float32)  # (N,)
        self.lengths = np.asarray(lengths, dtype=np.int64)  # (S,)
        self.users = np.asarray(users, dtype=np.int64)  # (S,) user index in the Ratings
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])  # (S + 1,)
        self._padded = None

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def items(self) -> np.ndarray:
        """(S, L) int64 right-padded with -1."""
        return self._pad()[0]

    @property
    def ratings(self) -> np.ndarray:
        """(S, L) float32 right-padded with 0."""
        return self._pad()[1]

    def _pad(self) -> tuple[np.ndarray, np.ndarray]:
        if self._padded is None:
            width = max(int(self.lengths.max()) if self.count else 1, 1)
            row, col = self.row_of(), self.position()
            items = np.full((self.count, width), -1, dtype=np.int64)
            values = np.zeros((self.count, width), dtype=np.float32)
            items[row, col], values[row, col] = self.flat_items, self.flat_ratings
            self._padded = items, values
        return self._padded

    def row_of(self) -> np.ndarray:
        """(N,) the row of each flat entry."""
        return np.repeat(np.arange(self.count), self.lengths)

    def position(self) -> np.ndarray:
        """(N,) each flat entry's step in its row."""
        return np.arange(len(self.flat_items)) - np.repeat(self.offsets[:-1], self.lengths)

    def rows(self, rows: np.ndarray) -> "Sequences":
        at = ranges(self.offsets[rows], self.lengths[rows])
        return Sequences.ragged(self.flat_items[at], self.flat_ratings[at], self.lengths[rows], self.users[rows])


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + length) for each pair, without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - lengths - np.asarray(starts), lengths)


@dataclasses.dataclass(frozen=True)
class Heldout:
    """Users evaluated on one target each: what is known of them, and what they did next."""

    context: Sequences  # (U, L) everything before the target
    targets: np.ndarray  # (U,) int64 the next item
    target_ratings: np.ndarray  # (U,) float32 its rating
    truth: np.ndarray | None  # (U, I) float32 expected rating of every item at the target step (synthetic)


@dataclasses.dataclass(frozen=True)
class Split:
    train: Sequences  # what every model trains on
    valid: Heldout  # `score` is computed here, and nothing else selects
    test: Heldout  # measured once, after selection
    n_items: int
    vocabulary: np.ndarray  # (I,) bool: the item occurs in training
    source: str
    split: str  # the protocol used (auto resolved)


# ----------------------------------------------------------------------------- data and split


def load(cfg: DataConfig) -> Ratings:
    """The configured dataset with its variants applied; any problem is a DataError."""
    if cfg.data == "synthetic":
        data = ratings.synthetic(synthetic_spec(cfg))
    else:
        data = ratings.load(cfg.data, cfg.data_format)
    if cfg.extreme_ratings:
        data = ratings.extreme(data)
    return ratings.subsample_users(data, cfg.user_fraction, cfg.data_seed)


def synthetic_spec(cfg: DataConfig) -> ratings.SyntheticSpec:
    """The generator's settings for `cfg`: MovieLens-100K's shape (SyntheticSpec's defaults), with
    histories capped at half the catalogue and starting at a quarter of it where it is smaller
    (test budgets: 80 items, histories of 20 to 40)."""
    shape = ratings.SyntheticSpec()
    return dataclasses.replace(
        shape,
        n_users=cfg.synthetic_users,
        n_items=cfg.synthetic_items,
        seed=cfg.data_seed,
        min_len=min(shape.min_len, cfg.synthetic_items // 4),
        max_len=min(shape.max_len, cfg.synthetic_items // 2),
    )


def load_split(cfg: DataConfig) -> tuple[Ratings, Split]:
    """The dataset and its split; any problem with the data is a ConfigError naming it."""
    try:
        data = load(cfg)
        split = make_split(data, cfg)
        if split.vocabulary.sum() < TOP_N:
            raise DataError(
                f"{data.source}: {split.vocabulary.sum()} items occur in training; ranking @{TOP_N} needs at "
                f"least {TOP_N}: use data with a larger catalogue"
            )
        return data, split
    except DataError as err:
        raise ConfigError(str(err)) from None


def make_split(data: Ratings, cfg: DataConfig) -> Split:
    kind = cfg.split if cfg.split != "auto" else ("users" if data.truth is not None else "loo")
    lengths = data.lengths()
    starts = np.concatenate([[0], np.cumsum(lengths)])
    position = np.arange(len(data.users)) - starts[data.users]  # each interaction's index in its history
    rng = np.random.default_rng(cfg.data_seed)
    if kind == "loo":
        evaluated = np.flatnonzero(lengths >= 3)
        _need(evaluated, 1, data, "users with 3+ interactions (leave-one-out needs training, validation and test)")
        in_train = position < (lengths[data.users] - 2)
        in_train |= lengths[data.users] < 3  # short users are training only
        valid_users, valid_len = evaluated, lengths[evaluated] - 2
        test_users, test_len = evaluated, lengths[evaluated] - 1
    elif kind == "users":
        candidates = rng.permutation(np.flatnonzero(lengths >= 2))
        n_eval = max(1, round(cfg.eval_fraction * len(candidates)))
        _need(candidates, 2 * n_eval + 1, data, "users with 2+ interactions (split=users)")
        valid_users, test_users = np.sort(candidates[:n_eval]), np.sort(candidates[n_eval : 2 * n_eval])
        valid_len, test_len = lengths[valid_users] - 1, lengths[test_users] - 1
        evaluated = np.concatenate([valid_users, test_users])
        held = np.zeros(len(data.users), dtype=bool)
        held[starts[evaluated + 1] - 1] = True  # each evaluated user's last interaction
        in_train = ~held
    elif kind == "time":
        cut_valid, cut_test = np.quantile(data.timesteps, [1 - 2 * cfg.eval_fraction, 1 - cfg.eval_fraction])
        in_train = data.timesteps < cut_valid
        # Each user's context ends at their first interaction in the period (histories are time-sorted).
        valid_users, valid_len = _first_in_period(data, position, cut_valid, cut_test)
        test_users, test_len = _first_in_period(data, position, cut_test, np.inf)
        for users, period, cut in [(valid_users, "validation", cut_valid), (test_users, "test", cut_test)]:
            _need(users, 1, data, f"users with history before the {period} period (split=time, from {cut:g})")
    else:
        raise DataError(f"unknown split {cfg.split!r}")

    train_users = np.unique(data.users[in_train])
    train_len = np.bincount(data.users[in_train], minlength=data.n_users)[train_users]
    train = pack(data, train_users, train_len, rng if cfg.shuffle_order else None)
    vocabulary = np.bincount(data.items[in_train], minlength=data.n_items) > 0
    return Split(
        train=train,
        valid=heldout(data, valid_users, valid_len),
        test=heldout(data, test_users, test_len),
        n_items=data.n_items,
        vocabulary=vocabulary,
        source=data.source,
        split=kind,
    )


def _need(users: np.ndarray, count: int, data: Ratings, what: str) -> None:
    if len(users) < count:
        raise DataError(f"{data.source}: {len(users)} {what}; need at least {count}")


def _first_in_period(data: Ratings, position, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Users with an interaction in [low, high) and some history before it: (users, context lengths)."""
    inside = (data.timesteps >= low) & (data.timesteps < high)
    first = np.full(data.n_users, -1)
    rows = np.flatnonzero(inside)[::-1]  # reversed: the earliest row per user is written last
    first[data.users[rows]] = position[rows]
    users = np.flatnonzero(first > 0)  # a context of at least one interaction
    return users, first[users]


def pack(data: Ratings, users: np.ndarray, lengths: np.ndarray, shuffle: np.random.Generator | None = None):
    """The first `lengths[k]` interactions of each of `users` as Sequences; with `shuffle`, each
    history's order is permuted (the order ablation)."""
    starts = np.concatenate([[0], np.cumsum(data.lengths())])
    lengths = np.asarray(lengths, dtype=np.int64)
    if shuffle is None:
        at = ranges(starts[users], lengths)
    else:  # one permutation per history, drawn in user order
        at = np.concatenate([starts[u] + shuffle.permutation(n) for u, n in zip(users, lengths)] or [np.zeros(0, int)])
    return Sequences.ragged(data.items[at], data.ratings[at], lengths, np.asarray(users, dtype=np.int64))


def heldout(data: Ratings, users: np.ndarray, lengths: np.ndarray) -> Heldout:
    """Users whose target is interaction number `lengths[k]` (0-based) of their history."""
    context = pack(data, users, lengths)
    starts = np.concatenate([[0], np.cumsum(data.lengths())])
    at = starts[users] + lengths
    truth = None
    if data.truth is not None:
        last = context.flat_items[context.offsets[1:] - 1]  # every evaluated user has a context
        truth = data.truth.expected(users, lengths, last)
    return Heldout(context, data.items[at], data.ratings[at], truth)


# ----------------------------------------------------------------------------- sequence features


def horizon_returns(values: np.ndarray, lengths: np.ndarray, horizon: int) -> np.ndarray:
    """(S, L) return-to-go over a sliding horizon: `horizon` x mean of the next <= `horizon` ratings.

    A sliding horizon keeps the conditioning stationary: asking for N more well-rated items means
    the same at step 5 as at step 500, and a sequence's tail is rescaled rather than truncated.
    """
    width = values.shape[1]
    csum = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, axis=1, dtype=np.float64)], axis=1)
    pos = np.arange(width)[None, :]
    end = np.minimum(pos + horizon, lengths[:, None])  # (S, L) exclusive end of each horizon
    count = np.maximum(end - pos, 1)
    total = np.take_along_axis(csum, end, axis=1) - csum[:, :width]
    returns = horizon * total / count
    return np.where(pos < lengths[:, None], returns, 0.0).astype(np.float32)


def running_state(values: np.ndarray, lengths: np.ndarray, max_position: int) -> np.ndarray:
    """(S, L + 1, STATE_DIM) what is known of the user before each step, and after the last one.

    Features, each roughly in [-1, 1]: mean rating so far, last rating, log of the position.
    """
    n, width = values.shape
    valid = np.arange(width)[None, :] < lengths[:, None]
    r = np.where(valid, values, 0.0)
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(r, axis=1)], axis=1)  # (S, L + 1)
    pos = np.arange(width + 1)[None, :]
    mid = (MAX_RATING + MIN_RATING) / 2
    half = (MAX_RATING - MIN_RATING) / 2
    mean = np.where(pos > 0, csum / np.maximum(pos, 1), mid)
    mean = np.where(pos <= lengths[:, None], mean, mid)
    last = np.concatenate([np.full((n, 1), mid), r], axis=1)
    last = np.where(pos <= lengths[:, None], last, mid)
    log_pos = np.broadcast_to(np.log1p(pos) / np.log1p(max_position), (n, width + 1))
    state = np.stack([(mean - mid) / half, (last - mid) / half, log_pos], axis=-1)
    return state.astype(np.float32)


# ----------------------------------------------------------------------------- evaluation


def exclusion_mask(context: Sequences, vocabulary: np.ndarray) -> np.ndarray:
    """(U, I) True where an item may not be recommended: one the user already interacted with, or
    one that never occurs in training (it has no learned score, and would otherwise win by default,
    e.g. by getting no popularity penalty)."""
    mask = np.broadcast_to(~vocabulary, (context.count, len(vocabulary))).copy()
    mask[context.row_of(), context.flat_items] = True
    return mask


def top_n(scores: np.ndarray, n: int = TOP_N) -> np.ndarray:
    """(U, n) the highest-scoring items per row, best first (exclusions already set to -inf)."""
    if scores.shape[1] < n:
        raise DataError(f"a catalogue of {scores.shape[1]} items cannot fill a top {n}; use at least {n} items")
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def evaluate(
    score_fn: Callable[[Sequences], np.ndarray],
    held: Heldout,
    vocabulary: np.ndarray,
    prefix: str,
    chunk: int = 1024,
    per_user: bool = False,
) -> dict:
    """Full-ranking metrics of a recommender on `held`, at most `chunk` users at a time.

    `score_fn(context rows) -> (rows, I)` scores; higher is better. A target the model cannot
    recommend (never in training, or already in the context) counts as a miss. Ties are broken
    against the target, so a constant score earns nothing; non-finite scores rank last (see the
    module's "Bad input").
    """
    n_users, n_items = held.context.count, len(vocabulary)
    chunk = max(1, min(chunk, EVAL_CELLS // max(n_items, 1)))
    ranks = np.empty(n_users)
    recommended = np.zeros(n_items, dtype=bool)
    nonfinite = repeated = 0
    true_model = true_random = true_oracle = 0.0
    for lo in range(0, n_users, chunk):
        rows = np.arange(lo, min(lo + chunk, n_users))
        context = held.context.rows(rows)
        exclude = exclusion_mask(context, vocabulary)
        raw = np.asarray(score_fn(context), dtype=np.float64)
        bad = ~np.isfinite(raw) & ~exclude  # (rows, I) rankable items without a usable score
        nonfinite += int(bad.sum())
        scores = np.where(exclude | bad, -np.inf, raw)
        at = np.arange(len(rows)), held.targets[rows]
        target, target_bad = scores[at], bad[at]
        repeated += int(np.unique(context.row_of()[context.flat_items == held.targets[rows][context.row_of()]]).size)
        # Ties and non-finite non-targets go against the target; a non-finite target ranks last.
        rank = (scores > target[:, None]).sum(1) + (scores == target[:, None]).sum(1) - 1 + bad.sum(1)
        last = (~exclude).sum(1) - 1
        ranks[rows] = np.where(target_bad, last, np.where(np.isfinite(target), rank, np.inf))
        top = top_n(scores)
        recommended[top[np.isfinite(np.take_along_axis(scores, top, 1))]] = True
        if held.truth is not None:
            truth = held.truth[rows]
            allowed = ~exclude
            true_model += truth[np.arange(len(rows))[:, None], top].mean(1).sum()
            true_random += ((truth * allowed).sum(1) / np.maximum(allowed.sum(1), 1)).sum()
            true_oracle += np.take_along_axis(truth, top_n(np.where(exclude, -np.inf, truth)), 1).mean(1).sum()
    out = {m.split_metric(prefix, k): v for k, v in ranking_metrics(ranks).items()}
    liked = held.target_ratings >= LIKED
    for k, v in ranking_metrics(ranks[liked]).items():
        if k != m.USERS:
            out[m.split_metric(prefix, m.LIKED + k)] = v
    out[m.split_metric(prefix, m.COVERAGE)] = float(recommended.sum() / max(vocabulary.sum(), 1))
    if per_user:  # for intervals over test users (platform/compare.py); not a Tune metric
        out[m.split_metric(prefix, m.PER_USER)] = per_user_metrics(ranks, held.context.users, held.target_ratings)
    out[m.split_metric(prefix, m.NONFINITE_SCORES)] = nonfinite
    out[m.split_metric(prefix, m.REPEATED_TARGETS)] = repeated
    if held.truth is not None:
        model, random, oracle = true_model / n_users, true_random / n_users, true_oracle / n_users
        out[m.split_metric(prefix, m.TRUE_RATING)] = float(model)
        out[m.split_metric(prefix, m.TRUE_RATING_NORM)] = float((model - random) / max(oracle - random, 1e-9))
    return out


def per_user_metrics(ranks: np.ndarray, users: np.ndarray, target_ratings: np.ndarray) -> dict:
    """{"users": user indices, HR: 0/1 per user, NDCG and MRR: per user, "rating": the target's
    rating}, JSON-ready lists in `users` order (test.json files written before MRR was added lack it)."""
    hit = ranks < TOP_N
    ndcg = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
    return {
        m.USERS: users.tolist(),
        m.HR: hit.astype(int).tolist(),
        m.NDCG: np.round(ndcg, 6).tolist(),
        m.MRR: np.round(1.0 / (ranks + 1.0), 6).tolist(),  # an unrankable target (inf) counts 0
        m.TARGET_RATING: np.asarray(target_ratings, float).tolist(),
    }


def ranking_metrics(ranks: np.ndarray) -> dict:
    """HR@10, NDCG@10 and MRR from 0-based target ranks (inf: the target could not be ranked)."""
    if not len(ranks):
        return {m.HR: float("nan"), m.NDCG: float("nan"), m.MRR: float("nan"), m.USERS: 0}
    hit = ranks < TOP_N
    return {
        m.HR: float(hit.mean()),
        m.NDCG: float(np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0).mean()),
        m.MRR: float((1.0 / (ranks + 1.0)).mean()),
        m.USERS: len(ranks),
    }


def score_meaning(metrics: dict) -> str:
    """One line saying what a recommender trial's `score` is, from its reported metrics."""
    if m.split_metric(m.VALID, m.TRUE_RATING_NORM) in metrics:
        what = f"{m.split_metric(m.VALID, m.TRUE_RATING_NORM)}, the true rating of the top 10 (random 0, oracle 1)"
    else:
        what = f"{m.split_metric(m.VALID, m.NDCG)}, leave-one-out next-item NDCG@10 over the full catalogue"
    return f"score = {what}; validation users only: what the search selects on"


def score_metric(split: Split) -> str:
    """What `score` is on this split: the normalised true rating on synthetic data, NDCG@10 otherwise."""
    return m.split_metric(m.VALID, m.TRUE_RATING_NORM if split.valid.truth is not None else m.NDCG)
