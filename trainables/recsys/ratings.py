"""Rating histories: a synthetic generator with ground truth, and loaders for real files.

Every source becomes a `Ratings`: one row per interaction with contiguous user and item indices,
sorted by (user, timestep). Synthetic data also carries its ground truth (`Truth`): the expected
rating of every item for every user at every step of their history, so any recommendation can be
scored exactly.

Formats read by `load`:
  tsv        header-less, whitespace or tab separated: user_id item_id rating timestep (1-5)
  goodreads  UCSD Goodreads interactions CSV: user_id,book_id,is_read,rating,is_reviewed;
             rating 0 means "not rated" and is dropped; no timestamps, so file order is time
  movielens  ratings.csv: userId,movieId,rating,timestamp (0.5-5 in half stars)
"""

import dataclasses
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

MIN_RATING, MAX_RATING = 1.0, 5.0
GOODREADS_HEADER = ["user_id", "book_id", "is_read", "rating", "is_reviewed"]
MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]
TSV_COLUMNS = ["user_id", "item_id", "rating", "timestep"]


class DataError(ValueError):
    """A rating file or data setting that cannot be used; the message names the file, line and fix."""


@dataclasses.dataclass(frozen=True)
class Ratings:
    users: np.ndarray  # (N,) int64 user index in [0, n_users)
    items: np.ndarray  # (N,) int64 item index in [0, n_items)
    ratings: np.ndarray  # (N,) float32 in [1, 5]
    timesteps: np.ndarray  # (N,) int64, non-decreasing within a user
    n_users: int
    n_items: int
    source: str
    truth: "Truth | None" = None  # synthetic only: the expected rating of any item at any step
    user_ids: np.ndarray | None = None  # (n_users,) original ids, for messages

    def lengths(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)


# ----------------------------------------------------------------------------- synthetic


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 3000
    n_items: int = 400
    factors: int = 8
    min_len: int = 40
    max_len: int = 80
    popularity_skew: float = 1.0  # Zipf exponent of item exposure
    taste: float = 1.0  # how strongly a user's choice follows their expected rating (exposure dominates)
    noise: float = 0.5  # std of observed rating around the expected one
    drift: float = 0.99  # per-step persistence of a user's latent taste (AR(1)); 1 = static taste
    transition: float = 1.0  # weight of the last item's "mood" on the next item's rating and choice
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Truth:
    """What a synthetic user would rate any item at any step of their history.

    The expected rating of item j at step t is a squashed sum of biases, the user's taste at step t
    (which drifts) and the affinity of j to the item consumed at step t - 1 (the "mood" it leaves).
    Kept in factored form: the full (users x steps x items) tensor would not fit in memory.
    """

    tastes: np.ndarray  # (U, T + 1, F) the user's taste before each step and after the last
    user_bias: np.ndarray  # (U,)
    item_factors: np.ndarray  # (I, F)
    item_bias: np.ndarray  # (I,)
    moods: np.ndarray  # (I, G) item-to-item affinity: mood(i, j) = moods[i] . moods[j]
    transition: float

    def expected(self, users: np.ndarray, steps: np.ndarray, last_items: np.ndarray) -> np.ndarray:
        """(U, I) expected rating of every item for `users` at `steps`, after `last_items` (-1: none)."""
        taste = self.tastes[users, steps]  # (U, F)
        mood = np.where((last_items >= 0)[:, None], self.moods[np.maximum(last_items, 0)], 0.0)  # (U, G)
        raw = (
            0.2
            + self.item_bias[None, :]
            + self.user_bias[users, None]
            + 1.3 * taste @ self.item_factors.T
            + self.transition * mood @ self.moods.T
        )
        return (MIN_RATING + (MAX_RATING - MIN_RATING) / (1.0 + np.exp(-raw))).astype(np.float32)


def synthetic(spec: SyntheticSpec, cache_dir: str | os.PathLike | None = None) -> Ratings:
    """Histories with sequential structure and ground truth, generated once per spec, cached as .npz."""
    cache = Path(cache_dir or os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab"))
    key = hashlib.sha1(repr((SYNTHETIC_VERSION, dataclasses.astuple(spec))).encode()).hexdigest()[:12]
    path = cache / f"synthetic-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return _synthetic_from_arrays(dict(f), spec)
        except (OSError, ValueError, KeyError):
            pass  # a corrupt cache entry is regenerated below
    arrays = _generate(spec)
    cache.mkdir(parents=True, exist_ok=True)
    # Write then rename: trials generating the same spec at once never read a half-written file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return _synthetic_from_arrays(arrays, spec)


SYNTHETIC_VERSION = 2  # bump when _generate changes, so stale caches are not reused
MOOD_DIM = 4


def _generate(spec: SyntheticSpec) -> dict:
    """Users consume items one step at a time, all users at once: the choice at step t follows
    exposure (a Zipf popularity) and the expected rating at step t, which depends on the drifting
    taste and on the item consumed at t - 1. Items are never consumed twice."""
    rng = np.random.default_rng(spec.seed)
    n_users, n_items, f = spec.n_users, spec.n_items, spec.factors
    item_factors = rng.normal(size=(n_items, f))
    item_bias = rng.normal(scale=0.3, size=n_items)
    user_bias = rng.normal(scale=0.3, size=n_users)
    moods = rng.normal(size=(n_items, MOOD_DIM)) / np.sqrt(MOOD_DIM)
    lengths = rng.integers(spec.min_len, spec.max_len + 1, size=n_users)
    width = int(lengths.max())
    # Taste: a stationary AR(1) per user, (U, T + 1, F) with variance 1/F per factor.
    tastes = np.empty((n_users, width + 1, f))
    tastes[:, 0] = rng.normal(size=(n_users, f)) / np.sqrt(f)
    innovation = np.sqrt(1.0 - spec.drift**2)
    for t in range(width):
        tastes[:, t + 1] = spec.drift * tastes[:, t] + innovation * rng.normal(size=(n_users, f)) / np.sqrt(f)
    truth = Truth(tastes, user_bias, item_factors, item_bias, moods, spec.transition)

    log_pop = -spec.popularity_skew * np.log(rng.permutation(n_items) + 1.0)
    consumed = np.zeros((n_users, n_items), dtype=bool)
    items = np.full((n_users, width), -1, dtype=np.int64)
    observed = np.zeros((n_users, width), dtype=np.float32)
    last = np.full(n_users, -1)
    everyone = np.arange(n_users)
    for t in range(width):
        expected = truth.expected(everyone, np.full(n_users, t), last)  # (U, I)
        logits = np.where(consumed, -np.inf, log_pop + spec.taste * (expected - 3.0))
        gumbel = -np.log(-np.log(rng.random((n_users, n_items))))  # argmax of logits + Gumbel = a sample
        pick = np.argmax(logits + gumbel, axis=1)
        rating = np.clip(np.rint(expected[everyone, pick] + rng.normal(scale=spec.noise, size=n_users)), 1, 5)
        items[:, t], observed[:, t] = pick, rating
        consumed[everyone, pick] = True
        last = pick
    valid = np.arange(width)[None, :] < lengths[:, None]
    users = np.broadcast_to(everyone[:, None], (n_users, width))[valid]
    steps = np.broadcast_to(np.arange(width)[None, :], (n_users, width))[valid]
    return {
        "users": users.astype(np.int64),
        "items": items[valid],
        "ratings": observed[valid],
        "timesteps": steps.astype(np.int64),
        "tastes": tastes.astype(np.float32),
        "user_bias": user_bias,
        "item_factors": item_factors,
        "item_bias": item_bias,
        "moods": moods,
    }


def _synthetic_from_arrays(a: dict, spec: SyntheticSpec) -> Ratings:
    return Ratings(
        users=a["users"],
        items=a["items"],
        ratings=a["ratings"],
        timesteps=a["timesteps"],
        n_users=spec.n_users,
        n_items=spec.n_items,
        truth=Truth(a["tastes"], a["user_bias"], a["item_factors"], a["item_bias"], a["moods"], spec.transition),
        source=f"synthetic({spec.n_users} users, {spec.n_items} items, seed {spec.seed})",
    )


# ----------------------------------------------------------------------------- real files


def detect_format(path: Path) -> str:
    """tsv unless the first line is a CSV header; a header close to a known one still picks that
    format, so a missing column is reported by name rather than as a parse error."""
    first = _first_line(path)
    if "," not in first:
        return "tsv"
    fields = {f.strip() for f in first.split(",")}
    if fields & {"userId", "movieId"}:
        return "movielens"
    if fields & {"book_id", "is_read", "is_reviewed"} or "user_id" in fields:
        return "goodreads"
    raise DataError(
        f"{path}: line 1: unrecognized header {first!r}; expected {','.join(MOVIELENS_HEADER)} (MovieLens), "
        f"{','.join(GOODREADS_HEADER)} (Goodreads), or no header and 4 whitespace-separated columns"
    )


def load(path: str | os.PathLike, fmt: str = "auto") -> Ratings:
    """Reads a rating file; any problem is a DataError naming the file, line and column."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass an existing ratings file with --set data=PATH")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "tsv":
        frame = _read(path, sep=r"\s+", header=None, names=TSV_COLUMNS, first_line=1)
        user, item, rating, time = TSV_COLUMNS
        lo, hi = MIN_RATING, MAX_RATING
    elif fmt == "goodreads":
        frame = _read(path, sep=",", header=0, names=None, first_line=2, expect=GOODREADS_HEADER)
        user, item, rating, time = "user_id", "book_id", "rating", None
        lo, hi = 0.0, MAX_RATING  # 0 = unrated, dropped below
    elif fmt == "movielens":
        frame = _read(path, sep=",", header=0, names=None, first_line=2, expect=MOVIELENS_HEADER)
        user, item, rating, time = MOVIELENS_HEADER
        lo, hi = 0.5, MAX_RATING
    else:
        raise DataError(f"unknown data_format {fmt!r}; use auto, tsv, goodreads or movielens")

    first_line = 1 if fmt == "tsv" else 2
    numeric = {}
    for column in [rating] + ([time] if time else []):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{path}: line {row + first_line}, column {column!r}: "
                f"expected a number, got {frame[column].iloc[row]!r}"
            )
        numeric[column] = values.to_numpy(dtype=np.float64)
    ratings = numeric[rating]
    out_of_range = np.flatnonzero((ratings < lo) | (ratings > hi))
    if out_of_range.size:
        row = int(out_of_range[0])
        raise DataError(
            f"{path}: line {row + first_line}, column {rating!r}: rating {ratings[row]:g} is outside [{lo:g}, {hi:g}]"
        )
    keep = ratings > 0 if fmt == "goodreads" else np.ones(len(frame), dtype=bool)
    if not keep.any():
        raise DataError(f"{path}: no rated interactions (every rating is 0 = unrated)")
    timesteps = numeric[time] if time else np.arange(len(frame), dtype=np.float64)
    frame = frame[keep]
    user_codes, user_ids = pd.factorize(frame[user].astype(str), sort=False)
    item_codes, _ = pd.factorize(frame[item].astype(str), sort=False)
    ratings = np.clip(ratings[keep], MIN_RATING, MAX_RATING)  # MovieLens 0.5 counts as 1
    order = np.lexsort((timesteps[keep], user_codes))  # by user, then time; stable for ties
    return Ratings(
        users=user_codes[order].astype(np.int64),
        items=item_codes[order].astype(np.int64),
        ratings=ratings[order].astype(np.float32),
        timesteps=timesteps[keep][order].astype(np.int64),
        n_users=len(user_ids),
        n_items=int(item_codes.max()) + 1,
        source=f"{path} ({fmt})",
        user_ids=np.asarray(user_ids),
    )


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip()
    raise DataError(f"{path}: the file is empty; a ratings file needs one interaction per line")


def _read(path: Path, sep: str, header, names, first_line: int, expect=None) -> pd.DataFrame:
    _first_line(path)  # raises on an empty file
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=header,
            names=names,
            dtype=str,
            skip_blank_lines=True,
            engine="c" if sep == "," else "python",
        )
    except pd.errors.ParserError as err:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if match:
            want, line, got = match.groups()
            raise DataError(f"{path}: line {line}: expected {want} columns, found {got}") from None
        raise DataError(f"{path}: cannot parse: {err}") from None
    if expect is not None:
        missing = [c for c in expect if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column {missing[0]!r}; the header must be {','.join(expect)}")
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no interactions")
    # A short line leaves NaN in its last columns: report the first one.
    missing_cells = frame.isna().to_numpy()
    if missing_cells.any():
        row, col = np.argwhere(missing_cells)[0]
        raise DataError(
            f"{path}: line {row + first_line}: column {frame.columns[col]!r} is missing "
            f"(expected {len(frame.columns)} columns)"
        )
    return frame


# ----------------------------------------------------------------------------- variants


def extreme(data: Ratings) -> Ratings:
    """The research's "extreme" ratings: 4-5 become 5, 1-3 become 1 (half stars: >= 4 is high)."""
    return dataclasses.replace(data, ratings=np.where(data.ratings >= 4.0, 5.0, 1.0).astype(np.float32))


def subsample_users(data: Ratings, fraction: float, seed: int) -> Ratings:
    """Keeps a random `fraction` of users (the research's 80/20 split), reindexed contiguously."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"user_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return data
    rng = np.random.default_rng(seed)
    kept = np.sort(rng.choice(data.n_users, size=max(1, round(fraction * data.n_users)), replace=False))
    new_index = np.full(data.n_users, -1)
    new_index[kept] = np.arange(kept.size)
    rows = new_index[data.users] >= 0
    return dataclasses.replace(
        data,
        users=new_index[data.users[rows]],
        items=data.items[rows],
        ratings=data.ratings[rows],
        timesteps=data.timesteps[rows],
        n_users=int(kept.size),
        truth=None
        if data.truth is None
        else dataclasses.replace(data.truth, tastes=data.truth.tastes[kept], user_bias=data.truth.user_bias[kept]),
        user_ids=None if data.user_ids is None else data.user_ids[kept],
    )
