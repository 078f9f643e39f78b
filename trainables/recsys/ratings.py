"""Rating histories: a synthetic generator with ground truth, and loaders for real files.

Every source becomes a `Ratings`: one row per interaction with contiguous user and item indices,
sorted by (user, timestep). Synthetic data also carries its ground truth (`Truth`): the expected
rating of every item for every user at every step of their history, so any recommendation can be
scored exactly.

Formats read by `load` (`auto` tells them apart by the first line):
  tsv        header-less, whitespace or tab separated: user item rating timestamp (MovieLens-100K's u.data)
  dat        header-less, `::` separated: user::item::rating::timestamp (MovieLens-1M/10M's ratings.dat)
  movielens  ratings.csv with the header userId,movieId,rating,timestamp (MovieLens-20M/25M/latest)
  recbole    RecBole's .inter: tab separated, header `user_id:token item_id:token rating:float
             timestamp:float` (columns found by name, in any order; others ignored)
  goodreads  UCSD Goodreads interactions CSV: user_id,book_id,is_read,rating,is_reviewed;
             rating 0 means "not rated" and is dropped; no timestamps, so file order is time
Ratings are kept as written, half stars included (0.5-5; goodreads 1-5).

Named datasets (`DATASETS`: ml-100k, ml-1m, ml-20m, ml-latest-small) are downloaded once from
GroupLens into $TUNELAB_DATA (default ~/.cache/tunelab)/<name>/<ratings file>, checked, and read
from there; offline, the error says which file to put where.

Order: users, then time; interactions of one user with the same timestamp (MovieLens rates in
batches: thousands of same-second ties) are ordered by `tie_keys`, a salted hash of what the
interaction's user and item did (the timestamps and ratings of all their interactions), so the
order, and with it which item is the test target, depends neither on the file's row order nor
on the ids' values. User and item indices follow the sorted ids, so a shuffled file gives
identical arrays.
"""

import csv
import dataclasses
import hashlib
import io
import os
import re
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

MIN_RATING, MAX_RATING = 1.0, 5.0  # the synthetic scale; the centre 3 of features and returns
LOWEST_RATING = 0.5  # MovieLens half stars: kept, not clipped to MIN_RATING
GOODREADS_HEADER = ["user_id", "book_id", "is_read", "rating", "is_reviewed"]
MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]
TSV_COLUMNS = ["user_id", "item_id", "rating", "timestep"]
RECBOLE_FIELDS = ["user_id", "item_id", "rating", "timestamp"]  # names before the ":type" suffix
FORMATS = ("auto", "tsv", "dat", "movielens", "recbole", "goodreads")


class DataError(ValueError):
    """A rating file or data setting that cannot be used; the message names the file, line and fix."""


@dataclasses.dataclass(frozen=True)
class Ratings:
    users: np.ndarray  # (N,) int64 user index in [0, n_users)
    items: np.ndarray  # (N,) int64 item index in [0, n_items)
    ratings: np.ndarray  # (N,) float32 in [0.5, 5] (synthetic: 1-5)
    timesteps: np.ndarray  # (N,) int64 (float64 where a file has fractional times), non-decreasing within a user
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
    """The generator's settings; the defaults give MovieLens-100K's shape (docs/recommenders.md,
    "Synthetic data", measured by bench/synthetic_shape.py)."""

    n_users: int = 943
    n_items: int = 1682
    factors: int = 8
    min_len: int = 20  # history lengths: min_len + a lognormal with this median and mean, capped at max_len
    median_len: float = 65.0
    mean_len: float = 106.0
    max_len: int = 737
    popularity_skew: float = 3.0  # exposure: -skew x log(rank / n_items + popularity_offset)
    popularity_offset: float = 0.2  # (a Zipf-Mandelbrot curve, the same shape for any catalogue size)
    taste: float = 1.0  # how strongly a user's choice follows their expected rating (exposure dominates)
    noise: float = 0.5  # std of observed rating around the expected one
    rating_offset: float = 0.2  # added to every expected rating before squashing into 1-5
    drift: float = 0.99  # per-step persistence of a user's latent taste (AR(1)); 1 = static taste
    transition: float = 1.0  # weight of the last item's "mood" on the next item's rating
    chain: float = 4.0  # weight of the last item's mood on the next choice: the order a sequential model learns
    seed: int = 0

    def __post_init__(self):
        if not self.min_len < self.median_len < self.mean_len:
            raise DataError(
                f"synthetic history lengths need min_len < median_len < mean_len (a lognormal above min_len), "
                f"got {self.min_len}, {self.median_len}, {self.mean_len}"
            )
        if not 1 <= self.min_len <= self.max_len <= self.n_items:
            raise DataError(
                f"synthetic history lengths need 1 <= min_len <= max_len <= n_items (no item is consumed twice), "
                f"got {self.min_len}, {self.max_len}, {self.n_items}"
            )


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
    offset: float = 0.2  # sets the rating scale's centre: the share of each star

    def expected(self, users: np.ndarray, steps: np.ndarray, last_items: np.ndarray) -> np.ndarray:
        """(U, I) expected rating of every item for `users` at `steps`, after `last_items` (-1: none)."""
        taste = self.tastes[users, steps]  # (U, F)
        mood = np.where((last_items >= 0)[:, None], self.moods[np.maximum(last_items, 0)], 0.0)  # (U, G)
        raw = (
            self.offset
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


SYNTHETIC_VERSION = 3  # bump when _generate changes, so stale caches are not reused
MOOD_DIM = 4


def history_lengths(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """(U,) min_len + a lognormal, rounded and capped at max_len, heavy-tailed like MovieLens's (many
    short histories, a few very long). Its median is the spec's; its spread makes the capped mean the
    spec's where the cap allows (else the uncapped one). The lengths are the distribution's quantiles
    at (k + 1/2) / U, shuffled: the sample's median and mean are the fitted ones, not a draw's."""
    median, cap = spec.median_len - spec.min_len, spec.max_len - spec.min_len
    mu = np.log(median)

    def capped_mean(sigma: float) -> float:  # E[min(X, cap)], X lognormal(mu, sigma)
        z = (np.log(cap) - mu) / sigma
        return float(np.exp(mu + sigma**2 / 2) * stats.norm.cdf(z - sigma) + cap * stats.norm.sf(z))

    target = spec.mean_len - spec.min_len
    sigma = np.sqrt(2.0 * np.log(target / median))  # uncapped: median e^mu, mean e^(mu + sigma^2 / 2)
    if median < cap and capped_mean(sigma) < target < capped_mean(5.0):
        sigma = optimize.brentq(lambda s: capped_mean(s) - target, sigma, 5.0)
    quantiles = (np.arange(spec.n_users) + 0.5) / spec.n_users
    excess = np.exp(mu + sigma * stats.norm.ppf(quantiles))
    return rng.permutation(np.minimum(spec.min_len + np.rint(excess).astype(np.int64), spec.max_len))


def _generate(spec: SyntheticSpec) -> dict:
    """Users consume items one step at a time, all users at once: the choice at step t follows
    exposure (a Zipf-Mandelbrot popularity), the expected rating at step t, which depends on the
    drifting taste and on the item consumed at t - 1, and (`chain`) that item's affinity to the
    candidates. Items are never consumed twice. Step t draws only for the users whose history is
    longer than t, so the work is (interactions x items), not (users x longest history x items)."""
    rng = np.random.default_rng(spec.seed)
    n_users, n_items, f = spec.n_users, spec.n_items, spec.factors
    item_factors = rng.normal(size=(n_items, f))
    item_bias = rng.normal(scale=0.3, size=n_items)
    user_bias = rng.normal(scale=0.3, size=n_users)
    moods = rng.normal(size=(n_items, MOOD_DIM)) / np.sqrt(MOOD_DIM)
    lengths = history_lengths(spec, rng)
    width = int(lengths.max())
    # Taste: a stationary AR(1) per user, (U, T + 1, F) with variance 1/F per factor.
    tastes = np.empty((n_users, width + 1, f))
    tastes[:, 0] = rng.normal(size=(n_users, f)) / np.sqrt(f)
    innovation = np.sqrt(1.0 - spec.drift**2)
    for t in range(width):
        tastes[:, t + 1] = spec.drift * tastes[:, t] + innovation * rng.normal(size=(n_users, f)) / np.sqrt(f)
    truth = Truth(tastes, user_bias, item_factors, item_bias, moods, spec.transition, spec.rating_offset)

    rank = rng.permutation(n_items)  # each item's popularity rank
    log_pop = -spec.popularity_skew * np.log(rank / n_items + spec.popularity_offset)
    consumed = np.zeros((n_users, n_items), dtype=bool)
    items = np.full((n_users, width), -1, dtype=np.int64)
    observed = np.zeros((n_users, width), dtype=np.float32)
    last = np.full(n_users, -1)
    directions = moods / np.linalg.norm(moods, axis=1, keepdims=True)  # (I, G) cosine: no item is a hub
    by_length = np.argsort(-lengths, kind="stable")  # the users still going at step t come first
    active = np.searchsorted(-lengths[by_length], -np.arange(width), side="right")  # (T,) users longer than t
    for t in range(width):
        users = by_length[: active[t]]
        expected = truth.expected(users, np.full(len(users), t), last[users])  # (U_t, I)
        chain = np.where((last[users] >= 0)[:, None], directions[np.maximum(last[users], 0)] @ directions.T, 0.0)
        logits = np.where(consumed[users], -np.inf, log_pop + spec.taste * (expected - 3.0) + spec.chain * chain)
        gumbel = -np.log(-np.log(rng.random(logits.shape)))  # argmax of logits + Gumbel = a sample
        pick = np.argmax(logits + gumbel, axis=1)
        noise = rng.normal(scale=spec.noise, size=len(users))
        rating = np.clip(np.rint(expected[np.arange(len(users)), pick] + noise), MIN_RATING, MAX_RATING)
        items[users, t], observed[users, t] = pick, rating
        consumed[users, pick] = True
        last[users] = pick
    valid = np.arange(width)[None, :] < lengths[:, None]
    everyone = np.arange(n_users)
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
        truth=Truth(
            a["tastes"],
            a["user_bias"],
            a["item_factors"],
            a["item_bias"],
            a["moods"],
            spec.transition,
            spec.rating_offset,
        ),
        source=f"synthetic({spec.n_users} users, {spec.n_items} items, seed {spec.seed})",
    )


# ----------------------------------------------------------------------------- named datasets


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A public archive holding one ratings file."""

    name: str
    url: str  # the zip archive
    member: str  # the ratings file inside it
    fmt: str
    md5: str | None  # of the archive; None where the archive changes between releases
    interactions: int | None  # rows of the ratings file; None where it changes between releases

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
# The md5 sums are those GroupLens publishes beside each archive (<archive>.zip.md5), as quoted by
# eli-osherovich/papers_with_code (datasets/movielens/dl_config.py); they could not be fetched
# from GroupLens itself where this was written (no network). ml-latest-small is re-released
# (its archive and size change), so it is checked by format only. Interaction counts are from
# each archive's README.
DATASETS = {
    d.name: d
    for d in [
        Dataset(
            "ml-100k", GROUPLENS + "ml-100k.zip", "ml-100k/u.data", "tsv", "0e33842e24a9c977be4e0107933c0723", 100_000
        ),
        Dataset(
            "ml-1m", GROUPLENS + "ml-1m.zip", "ml-1m/ratings.dat", "dat", "c4d9eecfca2ab87c1945afe126590906", 1_000_209
        ),
        Dataset(
            "ml-20m",
            GROUPLENS + "ml-20m.zip",
            "ml-20m/ratings.csv",
            "movielens",
            "cd245b17a1ae2cc31bb14903e1204af3",
            20_000_263,
        ),
        Dataset(
            "ml-latest-small", GROUPLENS + "ml-latest-small.zip", "ml-latest-small/ratings.csv", "movielens", None, None
        ),
    ]
}
DOWNLOAD_TIMEOUT_S = 30


def data_dir() -> Path:
    """Where named datasets live: $TUNELAB_DATA, else ~/.cache/tunelab."""
    return Path(os.environ.get("TUNELAB_DATA") or Path.home() / ".cache" / "tunelab").expanduser()


def fetch(dataset: Dataset, root: Path | None = None) -> Path:
    """The dataset's ratings file in the cache, downloaded and checked the first time.

    $TUNELAB_DATA_URL replaces the GroupLens address (a mirror, or a test's unreachable one)."""
    target = (root or data_dir()) / dataset.name / dataset.filename
    if target.is_file():
        return target
    url = dataset.url
    if os.environ.get("TUNELAB_DATA_URL"):
        url = os.environ["TUNELAB_DATA_URL"].rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            archive = response.read()
    except (OSError, ValueError) as err:  # URLError and timeouts are OSErrors
        reason = getattr(err, "reason", err)
        raise DataError(
            f"{dataset.name} is not in {target} and could not be downloaded from {url} ({reason}): "
            f"put {dataset.filename} from {dataset.url} there"
        ) from None
    if dataset.md5 is not None and hashlib.md5(archive).hexdigest() != dataset.md5:
        raise DataError(
            f"{url}: md5 {hashlib.md5(archive).hexdigest()} is not the published {dataset.md5}; "
            f"download it again, or put {dataset.filename} from {dataset.url} in {target.parent}"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            content = z.read(dataset.member)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{url}: not a zip archive holding {dataset.member} ({err})") from None
    tmp = target.with_suffix(f".{os.getpid()}.tmp")  # write then rename: concurrent trials never see half a file
    tmp.write_bytes(content)
    os.replace(tmp, target)
    return target


def load_named(dataset: Dataset | str, root: Path | None = None) -> Ratings:
    """A public dataset (a Dataset, or a name in DATASETS), from the cache or downloaded once."""
    dataset = DATASETS[dataset] if isinstance(dataset, str) else dataset
    name = dataset.name
    path = fetch(dataset, root)
    data = load(path, dataset.fmt)
    if dataset.interactions is not None and len(data.users) != dataset.interactions:
        raise DataError(
            f"{path}: {len(data.users)} interactions where {name} has {dataset.interactions}; it is not the "
            f"published file: delete it to download {name} again, or pass it by path (--set data=PATH)"
        )
    return dataclasses.replace(data, source=f"{name} ({path})")


# ----------------------------------------------------------------------------- real files


def detect_format(path: Path) -> str:
    """From the first line: `::` is dat, `name:type` fields are recbole, no comma is tsv, else a
    CSV header; a header close to a known one still picks that format, so a missing column is
    reported by name rather than as a parse error."""
    first = _first_line(path)
    if "::" in first:
        return "dat"
    if any(f.split(":", 1)[0] in RECBOLE_FIELDS and ":" in f for f in first.split("\t")):
        return "recbole"
    if "," not in first:
        return "tsv"
    fields = {f.strip() for f in first.split(",")}
    if fields & {"userId", "movieId"}:
        return "movielens"
    if fields & {"book_id", "is_read", "is_reviewed"} or "user_id" in fields:
        return "goodreads"
    raise DataError(
        f"{path}: line 1: unrecognized header {first!r}; expected {','.join(MOVIELENS_HEADER)} (MovieLens), "
        f"{','.join(GOODREADS_HEADER)} (Goodreads), a RecBole .inter header, or no header and 4 columns "
        "separated by whitespace or ::"
    )


def load(path: str | os.PathLike, fmt: str = "auto") -> Ratings:
    """Reads a rating file; any problem is a DataError naming the file, line and column."""
    if isinstance(path, str) and path in DATASETS:
        return load_named(path)
    path = Path(path).expanduser()
    if not path.is_file():
        names = ", ".join(DATASETS)
        raise DataError(f"{path}: no such file; pass an existing ratings file or a dataset name ({names})")
    fmt = detect_format(path) if fmt == "auto" else fmt
    lo = LOWEST_RATING
    if fmt in ("tsv", "dat"):
        frame = _read(path, sep=r"\s+" if fmt == "tsv" else "::", header=None, names=TSV_COLUMNS, first_line=1)
        user, item, rating, time = TSV_COLUMNS
    elif fmt == "recbole":
        frame = _read(path, sep="\t", header=0, names=None, first_line=2)
        frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
        missing = [c for c in RECBOLE_FIELDS if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column {missing[0]!r}; a RecBole .inter header names {RECBOLE_FIELDS}")
        user, item, rating, time = RECBOLE_FIELDS
    elif fmt == "goodreads":
        frame = _read(path, sep=",", header=0, names=None, first_line=2, expect=GOODREADS_HEADER)
        user, item, rating, time = "user_id", "book_id", "rating", None
        lo = 0.0  # 0 = unrated, dropped below
    elif fmt == "movielens":
        frame = _read(path, sep=",", header=0, names=None, first_line=2, expect=MOVIELENS_HEADER)
        user, item, rating, time = MOVIELENS_HEADER
    else:
        raise DataError(f"unknown data_format {fmt!r}; use one of {', '.join(FORMATS)}")

    first_line = 1 if fmt in ("tsv", "dat") else 2
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
    out_of_range = np.flatnonzero((ratings < lo) | (ratings > MAX_RATING))
    if out_of_range.size:
        row = int(out_of_range[0])
        raise DataError(
            f"{path}: line {row + first_line}, column {rating!r}: rating {ratings[row]:g} is outside "
            f"[{lo:g}, {MAX_RATING:g}]"
        )
    keep = ratings > 0 if fmt == "goodreads" else np.ones(len(frame), dtype=bool)
    if not keep.any():
        raise DataError(f"{path}: no rated interactions (every rating is 0 = unrated)")
    # Goodreads has no timestamps: the file's order is the only time there is.
    timesteps = numeric[time][keep] if time else np.arange(int(keep.sum()), dtype=np.float64)
    if np.all(timesteps == np.round(timesteps)):
        timesteps = timesteps.astype(np.int64)
    ratings = ratings[keep]
    # Indices follow the sorted ids (numbers when every id is a number), not the file's order.
    user_codes, user_ids = pd.factorize(frame[user].to_numpy()[keep], sort=True)
    item_codes, _ = pd.factorize(frame[item].to_numpy()[keep], sort=True)
    order = np.lexsort((tie_keys(user_codes, item_codes, ratings, timesteps), timesteps, user_codes))
    return Ratings(
        users=user_codes[order].astype(np.int64),
        items=item_codes[order].astype(np.int64),
        ratings=ratings[order].astype(np.float32),
        timesteps=timesteps[order],
        n_users=len(user_ids),
        n_items=int(item_codes.max()) + 1,
        source=f"{path} ({fmt})",
        user_ids=np.asarray(user_ids),
    )


TIE_SALT = np.uint64(0x7475_6E65_6C61_6231)  # fixed: the tie order is part of the protocol


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters nearby inputs (wraps on purpose)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def tie_keys(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """(N,) uint64 key that orders one user's same-timestamp interactions.

    Each interaction hashes its (timestamp, rating); a user's and an item's signature is the sum
    of their interactions' hashes (a multiset hash: no order, no ids); the key mixes the two with
    a fixed salt. So the order is pseudo-random (not by popularity, rating or id) and the same
    however the file's rows are ordered and its ids are spelt. Two items whose interactions carry
    exactly the same timestamps and ratings are indistinguishable: between those, the sort is
    stable (by item index)."""
    with np.errstate(over="ignore"):
        stamp = np.asarray(timesteps, dtype=np.float64).view(np.uint64)
        value = np.asarray(ratings, dtype=np.float64).view(np.uint64)
        row = _mix(stamp ^ _mix(value + TIE_SALT))
        item_sig = _segment_sums(row, items)
        user_sig = _segment_sums(row, users)
        return _mix(item_sig[items] ^ _mix(user_sig[users] + TIE_SALT))


def _segment_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(max(groups) + 1,) uint64 sum of `values` per group, modulo 2^64."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    out = np.zeros(int(groups.max()) + 1, dtype=np.uint64)
    out[sorted_groups[starts]] = np.add.reduceat(values[order], starts)
    return out


def _fields(line: str, sep: str) -> list[str]:
    """One line's fields as _read's parser splits them (whitespace, ::, or a CSV delimiter)."""
    if sep == r"\s+":
        return line.split()
    if sep == "::":
        return line.split("::")
    return next(csv.reader([line], delimiter=sep))


def _check_width(path: Path, sep: str, header, names) -> None:
    """Raises DataError when the first data row's field count is not the expected one (the names,
    or the header's fields): the parser takes the first row's width as the file's, so a wider first
    row would load with dropped or shifted columns; later rows of another width fail in the parser."""
    expected = len(names) if names else 0
    layout = (" " if sep == r"\s+" else sep).join(names) if names else ""
    seen = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if header is not None and not expected:
                fields = _fields(line.strip("\r\n"), sep)
                expected, layout = len(fields), f"one field per column of the header on line {number}"
                continue
            seen = number, len(_fields(line.strip("\r\n"), sep))
            break
    if seen is not None and seen[1] != expected:
        where = "separated by whitespace" if sep == r"\s+" else f"separated by {sep!r}"
        raise DataError(
            f"{path}: line {seen[0]}: {seen[1]} fields, expected {expected} ({layout}, {where}); "
            "fix the file or convert it to that format"
        )


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip()
    raise DataError(f"{path}: the file is empty; a ratings file needs one interaction per line")


def _read(path: Path, sep: str, header, names, first_line: int, expect=None) -> pd.DataFrame:
    """The file as a frame, columns typed by pandas (ids stay numbers when they are), with the C
    parser: MovieLens-20M's 20M rows load in seconds and without a Python string per cell."""
    _first_line(path)  # raises on an empty file
    _check_width(path, sep, header, names)
    source = path
    if sep == "::":  # multi-character separators need the slow Python parser: make it one tab
        source, sep = io.BytesIO(path.read_bytes().replace(b"::", b"\t")), "\t"
    try:
        # index_col=False: a row wider than the header must not turn its first field into the index
        # (pandas' default), which loads every column shifted by one without a word.
        frame = pd.read_csv(
            source, sep=sep, header=header, names=names, skip_blank_lines=True, engine="c", index_col=False
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
