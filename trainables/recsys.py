"""Pure helpers for sequential recommenders: user split, padded sequences, returns-to-go, running
user state, training windows, and the baselines and ranking metrics every recommender reports."""

import dataclasses

import numpy as np

from trainables.ratings import MAX_RATING, MIN_RATING, DataError, Ratings

STATE_DIM = 3  # running mean rating, last rating, log position; see `running_state`


@dataclasses.dataclass(frozen=True)
class Sequences:
    """Users' histories as padded (S, L) arrays; row s holds `lengths[s]` valid steps."""

    items: np.ndarray  # (S, L) int64, padding = -1
    ratings: np.ndarray  # (S, L) float32, padding = 0
    lengths: np.ndarray  # (S,) int64
    users: np.ndarray  # (S,) int64 user index in the Ratings

    @property
    def count(self) -> int:
        return len(self.lengths)


@dataclasses.dataclass(frozen=True)
class Split:
    train: Sequences  # training users' whole histories + evaluation users' contexts
    context: Sequences  # evaluation users' histories without their held-out tail
    heldout_items: np.ndarray  # (U, H) int64 the last H interactions of each evaluation user
    heldout_ratings: np.ndarray  # (U, H) float32


def pack(data: Ratings, users: np.ndarray, cut: int = 0) -> Sequences:
    """Pads the histories of `users` (in order) into (S, L) arrays, dropping each one's last `cut`."""
    starts = np.concatenate([[0], np.cumsum(data.lengths())])
    lengths = data.lengths()[users] - cut
    width = int(lengths.max())
    items = np.full((len(users), width), -1, dtype=np.int64)
    ratings = np.zeros((len(users), width), dtype=np.float32)
    for row, (user, n) in enumerate(zip(users, lengths)):
        lo = starts[user]
        items[row, :n] = data.items[lo : lo + n]
        ratings[row, :n] = data.ratings[lo : lo + n]
    return Sequences(items, ratings, lengths.astype(np.int64), np.asarray(users, dtype=np.int64))


def split_users(
    data: Ratings, eval_fraction: float, holdout: int, min_context: int, seed: int, drop_short: bool
) -> Split:
    """Holds out the last `holdout` interactions of a random `eval_fraction` of users.

    Every user needs `min_context + holdout` interactions (any user may be drawn for evaluation).
    Short users are an error naming one of them, or are left out with `drop_short`.
    """
    need = min_context + holdout
    lengths = data.lengths()
    short = np.flatnonzero(lengths < need)
    if short.size and not drop_short:
        example = short[0]
        name = data.user_ids[example] if data.user_ids is not None else example
        raise DataError(
            f"{data.source}: {short.size} of {data.n_users} users have fewer than {need} interactions "
            f"(context_length + holdout), e.g. user {name!r} with {lengths[example]}; "
            "lower context_length or holdout, or set drop_short_users=true to leave them out"
        )
    usable = np.flatnonzero(lengths >= need)
    if usable.size < 2:
        raise DataError(f"{data.source}: only {usable.size} users have {need}+ interactions; need at least 2")
    rng = np.random.default_rng(seed)
    n_eval = min(max(1, round(eval_fraction * usable.size)), usable.size - 1)
    eval_users = np.sort(rng.choice(usable, size=n_eval, replace=False))
    train_users = np.setdiff1d(usable, eval_users)

    full = pack(data, eval_users)
    context = pack(data, eval_users, cut=holdout)
    rows = np.arange(n_eval)[:, None]
    tail = context.lengths[:, None] + np.arange(holdout)  # (U, H) positions of the held-out steps
    train_part = pack(data, train_users)
    return Split(
        train=_concat(train_part, context),
        context=context,
        heldout_items=full.items[rows, tail],
        heldout_ratings=full.ratings[rows, tail],
    )


def _concat(a: Sequences, b: Sequences) -> Sequences:
    width = max(a.items.shape[1], b.items.shape[1])

    def pad(x: np.ndarray, fill) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)

    return Sequences(
        items=np.concatenate([pad(a.items, -1), pad(b.items, -1)]),
        ratings=np.concatenate([pad(a.ratings, 0), pad(b.ratings, 0)]),
        lengths=np.concatenate([a.lengths, b.lengths]),
        users=np.concatenate([a.users, b.users]),
    )


def horizon_returns(ratings: np.ndarray, lengths: np.ndarray, horizon: int) -> np.ndarray:
    """(S, L) return-to-go over a sliding horizon: `horizon` x mean of the next <= `horizon` ratings.

    A sliding horizon keeps the conditioning stationary: asking for N more well-rated items means
    the same at step 5 as at step 500, and a sequence's tail is rescaled rather than truncated.
    """
    width = ratings.shape[1]
    csum = np.concatenate([np.zeros((len(ratings), 1)), np.cumsum(ratings, axis=1, dtype=np.float64)], axis=1)
    pos = np.arange(width)[None, :]
    end = np.minimum(pos + horizon, lengths[:, None])  # (S, L) exclusive end of each horizon
    count = np.maximum(end - pos, 1)
    total = np.take_along_axis(csum, end, axis=1) - csum[:, :width]
    returns = horizon * total / count
    return np.where(pos < lengths[:, None], returns, 0.0).astype(np.float32)


def running_state(ratings: np.ndarray, lengths: np.ndarray, max_position: int) -> np.ndarray:
    """(S, L + 1, STATE_DIM) what is known of the user before each step, and after the last one.

    Features, each roughly in [-1, 1]: mean rating so far, last rating, log of the position.
    """
    n, width = ratings.shape
    valid = np.arange(width)[None, :] < lengths[:, None]
    r = np.where(valid, ratings, 0.0)
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(r, axis=1)], axis=1)  # (S, L + 1)
    pos = np.arange(width + 1)[None, :]
    mid = (MAX_RATING + MIN_RATING) / 2
    half = (MAX_RATING - MIN_RATING) / 2
    mean = np.where(pos > 0, csum / np.maximum(pos, 1), mid)
    last = np.concatenate([np.full((n, 1), mid), r], axis=1)
    last = np.where(pos <= lengths[:, None], last, mid)
    log_pos = np.broadcast_to(np.log1p(pos) / np.log1p(max_position), (n, width + 1))
    state = np.stack([(mean - mid) / half, (last - mid) / half, log_pos], axis=-1)
    return state.astype(np.float32)


def windows(lengths: np.ndarray, size: int) -> np.ndarray:
    """(W, 2) every (row, start) such that steps start .. start + size - 1 are valid."""
    counts = np.maximum(lengths - size + 1, 0)
    rows = np.repeat(np.arange(len(lengths)), counts)
    starts = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([rows, starts], axis=1).astype(np.int64)


def exclusion_mask(context: Sequences, train: Sequences, n_items: int) -> np.ndarray:
    """(U, I) True where an item may not be recommended to the user: one they already interacted
    with, or one that never occurs in training. The vocabulary is the training data's: an item seen
    only in held-out interactions has no learned score, and would otherwise win by default (e.g. it
    gets no popularity penalty)."""
    mask = np.zeros((context.count, n_items), dtype=bool)
    rows, cols = np.nonzero(context.items >= 0)
    mask[rows, context.items[rows, cols]] = True
    mask[:, np.bincount(train.items[train.items >= 0], minlength=n_items) == 0] = True
    return mask


def top_n(scores: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """(U, n) the highest-scoring items per row, best first, excluding `exclude` (U, I)."""
    masked = np.where(exclude, -np.inf, scores)
    part = np.argpartition(-masked, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(masked, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def popularity_recs(train: Sequences, exclude: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(train.items[train.items >= 0], minlength=exclude.shape[1]).astype(np.float64)
    return top_n(np.broadcast_to(counts, exclude.shape), exclude, n)


def random_recs(exclude: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return top_n(rng.random(exclude.shape), exclude, n)


def true_rating(expected: np.ndarray, users: np.ndarray, recs: np.ndarray) -> float:
    """Mean true expected rating of the recommended items (synthetic data)."""
    return float(expected[users[:, None], recs].mean())


def ranking_metrics(recs: np.ndarray, heldout_items: np.ndarray, heldout_ratings: np.ndarray) -> dict:
    """Full-ranking HR@N and NDCG@N against held-out interactions, plus how often a recommended
    item was one the user rated later and the mean of those ratings."""
    n = recs.shape[1]
    hits = recs[:, :, None] == heldout_items[:, None, :]  # (U, N, H)
    hit_at = hits.any(axis=2)  # (U, N)
    discounts = 1.0 / np.log2(np.arange(n) + 2.0)
    ideal = discounts[: min(n, heldout_items.shape[1])].sum()
    ndcg = (hit_at * discounts).sum(axis=1) / ideal
    hit_ratings = (hits * heldout_ratings[:, None, :]).sum(axis=2)[hit_at]
    return {
        "hr": float(hit_at.any(axis=1).mean()),
        "ndcg": float(ndcg.mean()),
        "rated_share": float(hit_at.mean()),
        "rated_mean": float(hit_ratings.mean()) if hit_ratings.size else 0.0,
    }
