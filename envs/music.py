"""A music-session simulator: users listen to recommended tracks, skip, and leave.

The catalogue is generated: artists are clusters of tracks in an embedding space (unit vectors),
track popularity is Zipf-skewed. A user has 1-6 "interest" tracks and a listening sigmoid of their
own (bias, sharpness). A session starts near one interest: its hidden session vector is that track's
embedding plus noise, and its first track is one of the interest's nearest neighbours. For each
recommended track the user listens to the fraction

    listened = sigmoid(sharpness * (cos(track, session) - bias)) * artist_decay ** (earlier plays of
               the track's artist in this session),   and 0 for a track already played,

then loses one unit of a patience budget (5) with probability 1 - listened; the session ends at 0
or at the step cap. After a session the user comes back for another with probability
return_base + return_gain * (mean listened fraction), up to max_sessions.

Every random draw is a hash of (population seed, user, session, step, purpose) (`uniform`), so a
user's interests, session starts and patience coins are the same whichever recommender serves
them: A/B arms see common random numbers, and differences are the arms' alone.

`Sessions` steps any number of sessions at once in numpy (the A/B tool runs whole populations
through it); `MusicSessionEnv` is one session as a gymnasium env for learned policies (observation:
the session's state plus M candidate tracks with features; action: which candidate), and
`MusicVectorEnv` is N of them stepped together by `Sessions`.
"""

import dataclasses
import functools
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.config import check_range, from_dict

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
PURPOSES = {name: i + 1 for i, name in enumerate(
    ["interests", "interest", "bias", "sharpness", "start", "first", "noise", "patience", "return", "pick", "pad"]
)}  # fmt: skip
# What a learned arm observes: all of it visible to a service (SessionView) or learned from logs (Logged).
GLOBAL_FEATURES = 4  # last listened, mean of the last 3 listened, step, mean listened so far
# co-listens after the last and the first track, cosines to them in the learned embedding, same artist
# as the last, earlier plays of the artist, logged popularity
CANDIDATE_FEATURES = 7
STATE = ("user", "session", "bias", "sharpness", "vector", "played", "listened", "steps", "patience", "done", "keys")
NEIGHBOURS = 50  # nearest tracks kept per track (session starts, the logging policy's candidates)
ARM_PURPOSES = ("pad", "pick")  # the draws an arm may make (SessionView.draw)
FOLLOWING = 20  # co-listened next tracks a service keeps per track
LEARNED_NEIGHBOURS = 10  # nearest tracks per track in the embedding learned from logs
# Populations (seeds of users) by role. The A/B's default population is 0; learned arms train and
# are selected on others, and the A/B refuses an arm that learned from its own.
AB_SEED = 0
TRAIN_SEED = 1  # the RL env's users (training and selection)
LOG_SEED = 101  # the logged sessions a service learns from
LOG_USERS = 5_000
ORACLE_SHORTLIST = 128  # tracks the oracle keeps per session (exact: see Sessions.best_expected)


@dataclasses.dataclass(frozen=True)
class MusicConfig:
    """Catalogue, users and session dynamics (the course's dynamics are the defaults: artist decay
    0.8, patience 5, repeats worth 0)."""

    tracks: int = 10_000
    """Tracks in the generated catalogue."""
    artists: int = 1_000
    """Artists; each track belongs to one (sizes vary, Poisson around tracks / artists)."""
    dim: int = 16
    """Embedding dimension."""
    artist_spread: float = 0.5
    """Spread of an artist's tracks around the artist's direction (0: identical tracks)."""
    popularity_skew: float = 1.0
    """Zipf exponent of track popularity (0: uniform)."""
    catalogue_seed: int = 0
    """Seeds the catalogue (artists, embeddings, popularity)."""
    interests_min: int = 1
    interests_max: int = 6
    """Interest tracks per user, uniform in [min, max], drawn by popularity."""
    bias_low: float = 0.3
    bias_high: float = 0.6
    """Cosine similarity at which a user listens to half a track, uniform per user in [low, high]."""
    sharpness_low: float = 6.0
    sharpness_high: float = 12.0
    """Slope of the listening sigmoid, uniform per user in [low, high]."""
    session_noise: float = 0.3
    """Noise added to the interest's embedding to make the hidden session vector."""
    artist_decay: float = 0.8
    """Listened fraction is multiplied by this for every earlier play of the artist in the session."""
    patience: int = 5
    """Budget that drops by 1 with probability 1 - listened; the session ends at 0."""
    max_steps: int = 100
    """Tracks per session at most (the first track included)."""
    max_sessions: int = 5
    """Sessions per user at most."""
    return_base: float = 0.2
    return_gain: float = 0.6
    """Probability of another session: return_base + return_gain * mean listened fraction."""
    candidates: int = 20
    """M: candidate tracks the env offers a learned policy per step."""

    def __post_init__(self):
        check_range(self, "[2, inf)", "tracks artists dim candidates")
        check_range(self, "[1, inf)", "interests_min interests_max patience max_steps max_sessions")
        check_range(self, "[0, inf)", "artist_spread popularity_skew session_noise sharpness_low sharpness_high")
        check_range(self, "[0, 1]", "artist_decay return_base return_gain")
        if self.interests_min > self.interests_max or self.bias_low > self.bias_high:
            raise ValueError("interests_min/bias_low must not exceed interests_max/bias_high")
        if self.sharpness_low > self.sharpness_high:
            raise ValueError("sharpness_low must not exceed sharpness_high")
        if self.artists > self.tracks:
            raise ValueError(f"artists ({self.artists}) must not exceed tracks ({self.tracks})")
        if self.return_base + self.return_gain > 1:
            raise ValueError("return_base + return_gain must be <= 1 (it is a probability)")


def parse(config: dict | None) -> MusicConfig:
    """A MusicConfig from env kwargs: unknown keys and bad values are one ConfigError naming them."""
    return from_dict(MusicConfig, dict(config or {}), "music simulator")


# ----------------------------------------------------------------------------- random numbers


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _chain(h: np.ndarray, *keys) -> np.ndarray:
    """The hash state `h` with `keys` mixed in, one after another (broadcasting)."""
    with np.errstate(over="ignore"):
        for key in keys:
            h = _mix(h ^ (np.asarray(key).astype(np.uint64) + GOLDEN))
    return h


def _start(seed: int, purpose: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix(np.atleast_1d(np.asarray(seed, np.uint64)) * GOLDEN + np.uint64(PURPOSES[purpose]))


def _to_unit(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def uniform(seed: int, purpose: str, *keys) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (seed, purpose, keys); keys broadcast."""
    return _to_unit(_chain(_start(seed, purpose), *keys))


ARM_SEED = 0  # the seed of every arm's draws: a constant, not the population's (see arm_keys)


def arm_keys(user: np.ndarray, session: np.ndarray) -> np.ndarray:
    """(N, len(ARM_PURPOSES)) the hash states an arm's draws continue (SessionView.keys), from
    (ARM_SEED, purpose, user, session) only. Not from the population seed: every step of the hash is
    invertible, so keys chained from it would hand an arm the seed, and with it the hidden state of
    every user. A service computes the same keys (platform/serve.py). At population 0 they equal
    the keys chained from the population seed before this rule, so figures measured there hold."""
    return np.stack([_chain(_start(ARM_SEED, p), user, session) for p in ARM_PURPOSES], 1)


def normal(seed: int, purpose: str, *keys) -> np.ndarray:
    """Standard normal numbers (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, purpose, *keys, 0)
    u2 = uniform(seed, purpose, *keys, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


# ----------------------------------------------------------------------------- catalogue and users


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What a service knows of the catalogue: each track's artist. No embedding, no popularity;
    read-only copies, so nothing an arm does reaches the simulator."""

    artist: np.ndarray  # (T,) artist of each track
    artist_offsets: np.ndarray  # (A + 1,) CSR over artist_tracks
    artist_tracks: np.ndarray  # (T,) track ids grouped by artist

    @property
    def size(self) -> int:
        return len(self.artist)

    @property
    def artists(self) -> int:
        return len(self.artist_offsets) - 1

    def artist_options(self, artist: np.ndarray, u: np.ndarray) -> np.ndarray:
        """(N, K) tracks of each row's artist (N,), one per uniform number u (N, K)."""
        start, size = self.artist_offsets[artist], self.artist_offsets[artist + 1] - self.artist_offsets[artist]
        return self.artist_tracks[start[:, None] + np.floor(u * size[:, None]).astype(np.int64)]


def _frozen(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


@dataclasses.dataclass(frozen=True)
class Catalogue:
    embeddings: np.ndarray  # (T, d) float32, unit norm
    artist: np.ndarray  # (T,) int
    popularity: np.ndarray  # (T,) probabilities
    by_popularity: np.ndarray  # (T,) track ids, most popular first
    pop_score: np.ndarray  # (T,) 1 for the most popular track, 0 for the least (log rank)
    artist_offsets: np.ndarray  # (A + 1,) CSR over artist_tracks
    artist_tracks: np.ndarray  # (T,) track ids grouped by artist
    neighbours: np.ndarray  # (T, NEIGHBOURS) nearest tracks by cosine, the track itself first

    @property
    def size(self) -> int:
        return len(self.artist)

    @functools.cached_property
    def metadata(self) -> Metadata:
        return Metadata(_frozen(self.artist), _frozen(self.artist_offsets), _frozen(self.artist_tracks))


@functools.lru_cache(maxsize=4)
def catalogue(tracks: int, artists: int, dim: int, spread: float, skew: float, seed: int) -> Catalogue:
    """The generated catalogue (cached per process: every env and arm of one config shares it)."""
    rng = np.random.default_rng([seed, 7])
    centres = rng.normal(size=(artists, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    artist = np.concatenate([np.arange(artists), rng.integers(0, artists, tracks - artists)])  # none empty
    rng.shuffle(artist)
    emb = centres[artist] + spread * rng.normal(size=(tracks, dim)) / np.sqrt(dim)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    rank = rng.permutation(tracks)  # rank[t]: 0 = most popular
    weight = 1.0 / (1.0 + rank) ** skew
    popularity = weight / weight.sum()
    order = np.argsort(artist, kind="stable")
    offsets = np.searchsorted(artist[order], np.arange(artists + 1))
    k = min(NEIGHBOURS, tracks)
    neighbours = np.empty((tracks, k), np.int64)
    for lo in range(0, tracks, 2048):  # (chunk, T) similarities at a time
        sims = emb[lo : lo + 2048] @ emb.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        neighbours[lo : lo + 2048] = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), 1), 1)
    return Catalogue(
        embeddings=emb,
        artist=artist,
        popularity=popularity,
        by_popularity=np.argsort(rank),
        pop_score=(1.0 - np.log1p(rank) / np.log(tracks)).astype(np.float32),
        artist_offsets=offsets,
        artist_tracks=order,
        neighbours=neighbours,
    )


def catalogue_of(cfg: MusicConfig) -> Catalogue:
    return catalogue(cfg.tracks, cfg.artists, cfg.dim, cfg.artist_spread, cfg.popularity_skew, cfg.catalogue_seed)


@dataclasses.dataclass(frozen=True)
class Users:
    """Users 0..N-1 of population `seed`; any user's attributes are the same in any population size."""

    interests: np.ndarray  # (N, interests_max) track ids, -1 past the user's count
    count: np.ndarray  # (N,)
    bias: np.ndarray  # (N,)
    sharpness: np.ndarray  # (N,)

    @staticmethod
    def make(cfg: MusicConfig, cat: Catalogue, seed: int, ids: np.ndarray) -> "Users":
        span = cfg.interests_max - cfg.interests_min + 1
        count = cfg.interests_min + np.floor(uniform(seed, "interests", ids) * span).astype(int)
        slots = np.arange(cfg.interests_max)
        cdf = np.cumsum(cat.popularity)
        drawn = np.searchsorted(cdf, uniform(seed, "interest", ids[:, None], slots[None, :]) * cdf[-1])
        interests = np.where(slots[None, :] < count[:, None], np.minimum(drawn, cat.size - 1), -1)
        bias = cfg.bias_low + (cfg.bias_high - cfg.bias_low) * uniform(seed, "bias", ids)
        sharp = cfg.sharpness_low + (cfg.sharpness_high - cfg.sharpness_low) * uniform(seed, "sharpness", ids)
        return Users(interests, count, bias, sharp)


# ----------------------------------------------------------------------------- sessions, batched


def _best_of(candidates: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the k best candidates per row, their values, the best value left off) by `values` (R, M)."""
    order = np.argsort(-values, 1, kind="stable")
    best = np.take_along_axis(candidates, order[:, :k], 1)
    kept = np.take_along_axis(values, order[:, :k], 1)
    left = np.take_along_axis(values, order[:, k : k + 1], 1)[:, 0] if values.shape[1] > k else np.zeros(len(values))
    return best, kept, left


class PlayedSoFar:
    """What the simulator and an arm's view both read of the sessions so far: `played`, `listened`
    (N, width), `steps` and `user` (N,) are the subclass's."""

    __slots__ = ()

    @property
    def first(self) -> np.ndarray:
        return self.played[:, 0]

    @property
    def last(self) -> np.ndarray:
        return self.played[np.arange(len(self.user)), np.maximum(self.steps - 1, 0)]

    @property
    def last_listened(self) -> np.ndarray:
        return self.listened[np.arange(len(self.user)), np.maximum(self.steps - 1, 0)]


class Sessions(PlayedSoFar):
    """N sessions stepped together. Session i is session number `session[i]` of user `user[i]` of
    population `seed`; its draws depend on nothing else, so any recommender meets the same starts."""

    def __init__(self, cfg: MusicConfig, seed: int, user: np.ndarray, session: np.ndarray):
        self.cfg, self.cat, self.seed = cfg, catalogue_of(cfg), seed
        self.user, self.session = np.asarray(user, np.int64), np.asarray(session, np.int64)
        n, d = len(self.user), cfg.dim
        people = Users.make(cfg, self.cat, seed, self.user)
        self.bias, self.sharpness = people.bias, people.sharpness
        pick = np.floor(uniform(seed, "start", self.user, self.session) * people.count).astype(int)
        interest = people.interests[np.arange(n), pick]  # (N,)
        noise = normal(seed, "noise", self.user[:, None], self.session[:, None], np.arange(d)[None, :])
        vec = self.cat.embeddings[interest] + self.cfg.session_noise * noise / np.sqrt(d)
        self.vector = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)  # (N, d) hidden
        near = np.floor(uniform(seed, "first", self.user, self.session) * 10).astype(int)
        first = self.cat.neighbours[interest, np.minimum(near, self.cat.neighbours.shape[1] - 1)]
        self.played = np.full((n, cfg.max_steps), -1, np.int64)  # (N, max_steps) track ids in order
        self.listened = np.zeros((n, cfg.max_steps), np.float32)
        self.steps = np.zeros(n, np.int64)  # tracks played so far
        self.patience = np.full(n, cfg.patience, np.int64)
        self.done = np.zeros(n, bool)
        # (N, len(ARM_PURPOSES)) hash states of (purpose, user, session): an arm's draws continue them
        # (SessionView.draw); nothing of the population seed, which would regenerate the users
        self.keys = arm_keys(self.user, self.session)
        self._oracle = None  # (shortlist (N, K), its expected values (N, K), bound (N,)) once asked
        self.play(first)

    def _width(self) -> int:
        """Columns of `played` in use (sessions are mostly far shorter than max_steps)."""
        return max(1, int(self.steps.max(initial=0)))

    def artist_plays(self, tracks: np.ndarray) -> np.ndarray:
        """(N, ...) earlier plays in each session of the artists of `tracks` (N, ...)."""
        played = self.played[:, : self._width()]
        played_artist = np.where(played >= 0, self.cat.artist[np.maximum(played, 0)], -1)  # (N, W)
        artists = self.cat.artist[tracks]
        return (played_artist.reshape(len(tracks), *([1] * (artists.ndim - 1)), -1) == artists[..., None]).sum(-1)

    def is_played(self, tracks: np.ndarray) -> np.ndarray:
        """(N, ...) whether each of `tracks` (N, ...) was played in its session."""
        played = self.played[:, : self._width()]
        return (played.reshape(len(tracks), *([1] * (tracks.ndim - 1)), -1) == tracks[..., None]).any(-1)

    def expected(self, tracks: np.ndarray) -> np.ndarray:
        """The fraction each session would listen to each of `tracks` (N, ...): what the oracle sees."""
        sims = np.einsum("nd,n...d->n...", self.vector, self.cat.embeddings[tracks])
        shape = (len(tracks),) + (1,) * (tracks.ndim - 1)
        base = 1.0 / (1.0 + np.exp(-self.sharpness.reshape(shape) * (sims - self.bias.reshape(shape))))
        fresh = ~self.is_played(tracks)
        return (base * self.cfg.artist_decay ** self.artist_plays(tracks) * fresh).astype(np.float32)

    def best_expected(self) -> np.ndarray:
        """(N,) the track each session would listen to most (the oracle's pick), exact. A session keeps
        a shortlist of its ORACLE_SHORTLIST tracks of highest expected listening, kept current by
        play(), and the highest value off the list when it was drawn up: decay and repeats only lower
        values, so while the list's best is at least that bound it is the best of the catalogue; a
        session whose list falls below its bound draws a new one."""
        if self._oracle is None:
            n, k = len(self.user), max(1, min(ORACLE_SHORTLIST, (self.cat.size - 1) // 2))
            self._oracle = (np.empty((n, k), np.int64), np.empty((n, k), np.float32), np.empty(n, np.float32))
            self._shortlist(np.arange(n))
        short, value, bound = self._oracle
        rows = np.arange(len(self.user))
        lost = np.flatnonzero(value.max(1) < bound)
        if len(lost):
            self._shortlist(lost)
        return short[rows, value.argmax(1)]

    def _shortlist(self, rows: np.ndarray) -> None:
        """Draws up the oracle's shortlist of sessions `rows`: the best K by expected value among the 4K
        tracks most similar to the session; every track beyond those is worth at most the sigmoid of
        the next similarity (decay and repeats only lower it), which bounds the list with the best
        value left off it. A session whose 4K nearest are all worth less than that bound (used up by
        decay and repeats) ranks the whole catalogue instead."""
        short, value, bound = self._oracle
        cat, k = self.cat, short.shape[1]
        m = min(4 * k, cat.size - 1)
        for lo in range(0, len(rows), 256):  # (256, T) similarities at a time
            part = rows[lo : lo + 256]
            sims = self.vector[part] @ cat.embeddings.T  # (R, T)
            near = np.argpartition(-sims, m, axis=1)[:, : m + 1]  # the m + 1 most similar, unordered
            near = np.take_along_axis(near, np.argsort(-np.take_along_axis(sims, near, 1), 1), 1)
            edge = np.take_along_axis(sims, near[:, m:], 1)[:, 0]
            beyond = 1.0 / (1.0 + np.exp(-self.sharpness[part] * (edge - self.bias[part]))) + 1e-6  # float32 slack
            values = self.take(part).expected(near[:, :m])  # (R, m) exact, decay and repeats included
            part_short, part_value, left = _best_of(near[:, :m], values, k)
            part_bound = np.maximum(left, beyond)
            for r in np.flatnonzero(part_value.max(1) < beyond):  # the nearest are used up: rank everything
                everything = np.arange(cat.size)[None, :]
                one = self.take(part[r : r + 1]).expected(everything)  # (1, T)
                s1, v1, l1 = _best_of(everything, one, k)
                part_short[r], part_value[r], part_bound[r] = s1[0], v1[0], l1[0]
            short[part], value[part], bound[part] = part_short, part_value, part_bound

    def _update_oracle(self, rows: np.ndarray, tracks: np.ndarray) -> None:
        short, value, _ = self._oracle
        same = self.cat.artist[short[rows]] == self.cat.artist[tracks][:, None]  # (R, K)
        value[rows] = np.where(same, value[rows] * np.float32(self.cfg.artist_decay), value[rows])
        value[rows] = np.where(short[rows] == tracks[:, None], 0.0, value[rows])

    def take(self, rows: np.ndarray) -> "Sessions":
        """The sessions `rows` as a batch of their own (the A/B drops finished sessions this way)."""
        out = object.__new__(Sessions)
        out.__dict__.update(self.__dict__)
        for name in STATE:
            setattr(out, name, getattr(self, name)[rows])
        out._oracle = None if self._oracle is None else tuple(x[rows] for x in self._oracle)
        return out

    def play(self, tracks: np.ndarray) -> np.ndarray:
        """Plays one track in every session that is not done; returns the listened fractions (N,)
        (0 for sessions already done)."""
        tracks = np.asarray(tracks, np.int64)
        live = ~self.done
        listened = np.where(live, self.expected(tracks[:, None])[:, 0], 0.0).astype(np.float32)
        rows = np.flatnonzero(live)
        self.played[rows, self.steps[rows]] = tracks[rows]
        self.listened[rows, self.steps[rows]] = listened[rows]
        coin = uniform(self.seed, "patience", self.user, self.session, self.steps)
        self.patience -= (live & (coin < 1.0 - listened)).astype(np.int64)
        if self._oracle is not None:
            self._update_oracle(rows, tracks[rows])
        self.steps += live
        self.done |= (self.patience <= 0) | (self.steps >= self.cfg.max_steps)
        return listened

    # ------------------------------------------------------------------ what a service sees

    def view(self) -> "SessionView":
        """The sessions as a recommender service sees them (copies: nothing leads back here)."""
        w = self._width()
        played = self.played[:, :w].copy()
        artists = np.where(played >= 0, self.cat.artist[np.maximum(played, 0)], -1)
        return SessionView(self.user.copy(), self.session.copy(), self.steps.copy(), played,
                           self.listened[:, :w].copy(), artists, self.cat.metadata, self.keys.copy())  # fmt: skip

    def content_candidates(self) -> np.ndarray:
        """(N, M) the logging policy's candidates, read from the truth: unplayed tracks of the last
        track's artist, nearest neighbours of the last and the first track in the simulator's own
        embedding, then the truly popular tracks. Only LoggingPolicy calls it."""
        cfg, cat, n = self.cfg, self.cat, len(self.user)
        last, first = self.last, self.first
        a = cat.artist[last]
        start, size = cat.artist_offsets[a], cat.artist_offsets[a + 1] - cat.artist_offsets[a]
        pick = uniform(self.seed, "pick", self.user[:, None], self.session[:, None], self.steps[:, None],
                       np.arange(8)[None, :])  # fmt: skip
        same_artist = cat.artist_tracks[start[:, None] + np.floor(pick * size[:, None]).astype(int)]
        top = cfg.candidates + cfg.max_steps  # more than a session can have played: every row fills
        popular = np.broadcast_to(cat.by_popularity[:top], (n, top))
        pool = np.concatenate([same_artist, cat.neighbours[last, 1:20], cat.neighbours[first, 1:10], popular], 1)
        order = np.argsort(pool, axis=1, kind="stable")
        ordered = np.take_along_axis(pool, order, 1)
        repeat = np.zeros_like(ordered, bool)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        duplicate = np.empty_like(repeat)
        np.put_along_axis(duplicate, order, repeat, 1)
        ok = ~duplicate & ~self.is_played(pool)
        rank = np.cumsum(ok, 1) - 1
        rows, cols = np.nonzero(ok & (rank < cfg.candidates))
        out = np.empty((n, cfg.candidates), np.int64)
        out[rows, rank[rows, cols]] = pool[rows, cols]
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class SessionView(PlayedSoFar):
    """N live sessions as a recommender service sees them: who, which tracks so far, how much of
    each was listened to, and their artists; the catalogue's public metadata (artists). Nothing
    else: no reference to the simulator, its embedding or popularity, the users' hidden session
    vectors, listening curves or patience. Every arm but the oracle is handed only this."""

    user: np.ndarray  # (N,)
    session: np.ndarray  # (N,)
    steps: np.ndarray  # (N,) tracks played so far
    played: np.ndarray  # (N, W) track ids in order, -1 past steps
    listened: np.ndarray  # (N, W) listened fractions
    artists: np.ndarray  # (N, W) artist of each played track, -1 past steps
    cat: Metadata
    keys: np.ndarray  # (N, len(ARM_PURPOSES)) hash states for draws (see draw)

    def is_played(self, tracks: np.ndarray) -> np.ndarray:
        """(N, ...) whether each of `tracks` (N, ...) was played in its session."""
        return (self.played.reshape(len(tracks), *([1] * (tracks.ndim - 1)), -1) == tracks[..., None]).any(-1)

    def artist_plays(self, tracks: np.ndarray) -> np.ndarray:
        """(N, ...) earlier plays in each session of the artists of `tracks` (N, ...)."""
        artists = self.cat.artist[tracks]
        return (self.artists.reshape(len(tracks), *([1] * (artists.ndim - 1)), -1) == artists[..., None]).sum(-1)

    def draw(self, purpose: str, *keys) -> np.ndarray:
        """Uniform [0, 1) numbers per session and step: uniform(population, purpose, user, session,
        steps, *keys), so an arm's randomness is the same common random numbers in every run."""
        dims = max([np.ndim(k) for k in keys] + [1])
        h = self.keys[:, ARM_PURPOSES.index(purpose)].reshape(-1, *([1] * (dims - 1)))
        return _to_unit(_chain(h, self.steps.reshape(-1, *([1] * (dims - 1))), *keys))


class Oracle:
    """The ceiling, not a recommender any service could run: it reads the hidden session vectors
    and listening curves (Sessions.best_expected) and plays the track with the highest expected
    listened fraction. The only arm `simulate` hands the truth."""

    def __call__(self, s: Sessions) -> np.ndarray:
        return s.best_expected()


@dataclasses.dataclass(frozen=True)
class LoggingPolicy:
    """The earlier service whose sessions are the logs every service learns from: a uniformly random
    one of Sessions.content_candidates (neighbours in the simulator's own space: an earlier
    content-based candidate generator; the logs carry its exposure, the listening is the users').
    It only writes the logs of log populations (`logged`, `platform.ab`'s i2i); it is never an arm."""

    seed: int

    def __call__(self, s: Sessions) -> np.ndarray:
        options = s.content_candidates()
        u = uniform(self.seed, "pick", s.user, s.session, s.steps, 7)
        return options[np.arange(len(options)), np.minimum((u * options.shape[1]).astype(int), options.shape[1] - 1)]


TRUTH_READERS = (Oracle, LoggingPolicy)  # simulate hands these the Sessions; every other recommender a SessionView


# ----------------------------------------------------------------------------- what a service learns from logs


@dataclasses.dataclass(frozen=True)
class Logged:
    """What a recommender service learned from the logged sessions of a log population (other users
    than any A/B's): play counts, item-to-item co-listens, an item embedding factorised from the
    co-listens, and a one-step reward model over the candidate features. Built from logs only
    (`learn`); the simulator's vectors and popularity never enter it."""

    log_seed: int  # the population the logs are of
    log_users: int
    max_steps: int  # the service's session cap and candidates per step (its settings, as the env's)
    candidates: int
    plays: np.ndarray  # (T,) logged plays
    by_popularity: np.ndarray  # (T,) track ids, most played first
    pop_score: np.ndarray  # (T,) 1 for the most played track, 0 for the least (log rank)
    following: np.ndarray  # (T, FOLLOWING) tracks listened to (>= half) right after each, most often first, -1 padded
    co_score: np.ndarray  # (T, FOLLOWING) log1p(count) / log1p(largest count) of those pairs
    embedding: np.ndarray  # (T, k) unit rows from the co-listen PPMI's SVD; 0 for tracks never co-listened
    neighbours: np.ndarray  # (T, LEARNED_NEIGHBOURS) nearest by that embedding, -1 where unknown
    reward: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    """(Q,) least-squares weights of listened ~ quadratic(candidate features), fitted on logged
    sessions of users the counts above never saw: the one-step model the `greedy` arm maximises."""

    @property
    def populations(self) -> dict[str, int]:
        return {"log": self.log_seed}

    @staticmethod
    def learn(rows: dict, meta: Metadata, cfg: MusicConfig, log_seed: int, dim: int = 16) -> "Logged":
        """Counts, co-listens and the co-listen embedding of a session log (columns of log_rows)."""
        from scipy import sparse
        from scipy.sparse import linalg

        tracks = meta.size
        order = np.lexsort((rows["step"], rows["session"], rows["user"]))
        user, session = np.asarray(rows["user"])[order], np.asarray(rows["session"])[order]
        track, listened = np.asarray(rows["track"])[order], np.asarray(rows["listened"])[order]
        plays = np.bincount(track, minlength=tracks)
        by_popularity = np.argsort(-plays, kind="stable")
        rank = np.empty(tracks, np.int64)
        rank[by_popularity] = np.arange(tracks)
        pop_score = (1.0 - np.log1p(rank) / np.log(tracks)).astype(np.float32)
        # item-to-item: the next track, listened to at least half, right after each track
        same = (user[1:] == user[:-1]) & (session[1:] == session[:-1]) & (listened[1:] >= 0.5)
        pairs, counts = np.unique(track[:-1][same] * tracks + track[1:][same], return_counts=True)
        a, b = pairs // tracks, pairs % tracks
        by = np.lexsort((-counts, a))
        a, b, counts = a[by], b[by], counts[by]
        rank_in = np.arange(len(a)) - np.searchsorted(a, a)
        keep = rank_in < FOLLOWING
        following = np.full((tracks, FOLLOWING), -1, np.int64)
        co_score = np.zeros((tracks, FOLLOWING), np.float32)
        following[a[keep], rank_in[keep]] = b[keep]
        co_score[a[keep], rank_in[keep]] = np.log1p(counts[keep]) / np.log1p(counts.max(initial=1))
        # embedding: SVD of the positive PMI of tracks listened to (>= half) in the same session
        liked = listened >= 0.5
        sid = np.unique(np.stack([user, session], 1)[liked], axis=0, return_inverse=True)[1].ravel()
        incidence = sparse.csr_matrix((np.ones(liked.sum()), (sid, track[liked])), (sid.max(initial=-1) + 1, tracks))
        incidence.data[:] = 1.0
        co = (incidence.T @ incidence).tocoo()
        off = co.row != co.col
        r, c, v = co.row[off], co.col[off], co.data[off]
        total, marginal = v.sum(), np.bincount(r, v, tracks)
        pmi = np.log(v * total / (marginal[r] * marginal[c]))
        pos = pmi > 0
        ppmi = sparse.csr_matrix((pmi[pos], (r[pos], c[pos])), (tracks, tracks))
        k = min(dim, tracks - 2)
        u, sv, _ = linalg.svds(ppmi, k=k, random_state=0) if ppmi.nnz else (np.zeros((tracks, k)), np.zeros(k), None)
        emb = u * np.sqrt(sv)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        known = norm[:, 0] > 1e-9
        emb = np.where(known[:, None], emb / np.maximum(norm, 1e-9), 0.0).astype(np.float32)
        neighbours = np.full((tracks, LEARNED_NEIGHBOURS), -1, np.int64)
        seen = np.flatnonzero(known)
        n = min(LEARNED_NEIGHBOURS, len(seen) - 1)
        for lo in range(0, len(seen), 1024):  # (chunk, known) similarities at a time
            rows_ = seen[lo : lo + 1024]
            sims = emb[rows_] @ emb[seen].T
            sims[np.arange(len(rows_)), lo + np.arange(len(rows_))] = -np.inf  # not the track itself
            if n > 0:
                top = np.argpartition(-sims, n - 1, axis=1)[:, :n]
                top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), 1), 1)
                neighbours[rows_, :n] = seen[top]
        return Logged(log_seed, int(len(np.unique(user))), cfg.max_steps, cfg.candidates, plays, by_popularity,
                      pop_score, following, co_score, emb, neighbours)  # fmt: skip


@functools.lru_cache(maxsize=4)
def logged(cfg: MusicConfig, log_seed: int = LOG_SEED, log_users: int = LOG_USERS) -> Logged:
    """The service's knowledge from `log_users` users of population `log_seed` under the logging
    policy, with its one-step reward model fitted on log_users // 4 further users of that population
    (cached per process: every env and arm of one setting shares it)."""
    meta, policy = catalogue_of(cfg).metadata, LoggingPolicy(log_seed)
    learned = Logged.learn(log_rows(simulate(cfg, policy, log_seed, np.arange(log_users))), meta, cfg, log_seed)
    held = np.arange(log_users, log_users + max(1, log_users // 4))
    reward = fit_reward(learned, meta, log_rows(simulate(cfg, policy, log_seed, held)))
    return dataclasses.replace(learned, reward=reward)


def service_candidates(view: SessionView, known: Logged) -> np.ndarray:
    """(N, M) candidate tracks from what the service knows: unplayed tracks of the last track's
    artist, tracks co-listened after the last and the first track, the last track's neighbours in the
    learned embedding, then the most played tracks in the logs; duplicates and played tracks removed."""
    n, m = len(view.user), known.candidates
    last, first = view.last, view.first
    same_artist = view.cat.artist_options(view.cat.artist[last], view.draw("pick", np.arange(8)[None, :]))
    top = m + view.played.shape[1]  # more than the session has played: every row fills
    popular = np.broadcast_to(known.by_popularity[:top], (n, top))
    pool = np.concatenate([same_artist, known.following[last, :19], known.following[first, :9],
                           known.neighbours[last], popular], 1)  # fmt: skip
    order = np.argsort(pool, axis=1, kind="stable")
    ordered = np.take_along_axis(pool, order, 1)
    repeat = np.zeros_like(ordered, bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    duplicate = np.empty_like(repeat)
    np.put_along_axis(duplicate, order, repeat, 1)
    ok = (pool >= 0) & ~duplicate & ~view.is_played(pool)
    rank = np.cumsum(ok, 1) - 1
    rows, cols = np.nonzero(ok & (rank < m))
    out = np.empty((n, m), np.int64)
    out[rows, rank[rows, cols]] = pool[rows, cols]
    return out


def _co(known: Logged, source: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """(N, M) co-listen score of source (N,) -> tracks (N, M); 0 where the logs saw no such pair."""
    hit = known.following[source][:, None, :] == tracks[:, :, None]  # (N, M, FOLLOWING)
    return (hit * known.co_score[source][:, None, :]).sum(-1)


def candidate_features(known: Logged, meta: Metadata, last, first, tracks, plays) -> np.ndarray:
    """(N, M, CANDIDATE_FEATURES) in [-1, 1] of tracks (N, M) after `last` and `first` (N,), their
    artists having `plays` (N, M) earlier plays in the session."""
    emb = known.embedding
    return np.stack(
        [
            _co(known, last, tracks),
            _co(known, first, tracks),
            np.einsum("nd,nmd->nm", emb[last], emb[tracks]),
            np.einsum("nd,nmd->nm", emb[first], emb[tracks]),
            (meta.artist[tracks] == meta.artist[last][:, None]).astype(np.float32),
            np.minimum(plays / 5.0, 1.0),
            known.pop_score[tracks],
        ],
        2,
    ).astype(np.float32)


def observe(view: SessionView, known: Logged, candidates: np.ndarray) -> np.ndarray:
    """(N, GLOBAL_FEATURES + M * CANDIDATE_FEATURES) float32 in [-1, 1]: what a learned arm sees."""
    steps = np.maximum(view.steps, 1)
    recent = np.arange(view.listened.shape[1])[None, :] >= (view.steps - 3)[:, None]
    glob = np.stack([view.last_listened, (view.listened * recent).sum(1) / np.minimum(steps, 3),
                     view.steps / known.max_steps, view.listened.sum(1) / steps], 1)  # fmt: skip
    feats = candidate_features(known, view.cat, view.last, view.first, candidates, view.artist_plays(candidates))
    return np.concatenate([glob, feats.reshape(len(candidates), -1)], 1).astype(np.float32)


def quadratic(features: np.ndarray) -> np.ndarray:
    """(..., Q) 1, the features and their pairwise products: the reward model's inputs."""
    f = features
    i, j = np.triu_indices(f.shape[-1])
    return np.concatenate([np.ones(f.shape[:-1] + (1,), f.dtype), f, f[..., i] * f[..., j]], -1)


def fit_reward(known: Logged, meta: Metadata, rows: dict) -> np.ndarray:
    """Least-squares weights of the listened fraction on quadratic(candidate features), one example
    per logged track after a session's first (its features as the service would have computed them)."""
    order = np.lexsort((rows["step"], rows["session"], rows["user"]))
    user, session = np.asarray(rows["user"])[order], np.asarray(rows["session"])[order]
    track, listened = np.asarray(rows["track"])[order], np.asarray(rows["listened"], np.float64)[order]
    start = np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])]
    head = np.maximum.accumulate(np.where(start, np.arange(len(track)), 0))  # each row's session's first row
    key = head * meta.artists + meta.artist[track]  # earlier plays of the track's artist in its session
    by = np.lexsort((np.arange(len(key)), key))
    runs = np.r_[True, key[by][1:] != key[by][:-1]]
    plays = np.empty(len(key), np.int64)
    plays[by] = np.arange(len(key)) - np.maximum.accumulate(np.where(runs, np.arange(len(key)), 0))
    rows_ = np.flatnonzero(~start)
    last, first = track[rows_ - 1], track[head[rows_]]
    feats = candidate_features(known, meta, last, first, track[rows_, None], plays[rows_, None])  # (E, 1, F)
    x = quadratic(feats[:, 0].astype(np.float64))
    return np.linalg.lstsq(x, listened[rows_], rcond=None)[0]


# ----------------------------------------------------------------------------- gymnasium


# The env's own keys beside the simulator's: which users it serves and which logs its service learned from.
POPULATION_KEYS = {"population": 10_000, "population_seed": TRAIN_SEED, "log_seed": LOG_SEED, "log_users": LOG_USERS}


def with_populations(env_config: dict | None) -> dict:
    """`env_config` with every population key explicit (the defaults filled in), so a checkpoint's
    config records the populations its policy was trained and selected on."""
    return {**POPULATION_KEYS, **dict(env_config or {})}


def split_config(config: dict) -> tuple[dict, MusicConfig]:
    """(population keys, simulator config) of an env's keyword arguments."""
    config = with_populations(config)
    return {k: int(config.pop(k)) for k in POPULATION_KEYS}, parse(config)


def observation_space(cfg: MusicConfig) -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, (GLOBAL_FEATURES + cfg.candidates * CANDIDATE_FEATURES,), np.float32)


def _info(sessions: Sessions, listened: np.ndarray, tracks: np.ndarray, repeat, same_artist) -> dict:
    return {
        "track": tracks,
        "listened": listened,
        "affinity": np.einsum("nd,nd->n", sessions.vector, sessions.cat.embeddings[tracks]),
        "repeat": repeat,
        "same_artist": same_artist,
    }


class MusicSessionEnv(gym.Env):
    """One listening session per episode: reward = fraction of the chosen track listened to.

    A reset draws a user and a session number from the env's RNG (users 0..population-1 of
    `population_seed`, TRAIN_SEED by default: never the A/B's); `options={"user": u, "session": s}`
    picks them. The observation is what a service sees and learned from the logs of `log_users`
    users of population `log_seed` (`observe`): no simulator vector, no patience.
    """

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None, **config):
        # RLlib hands its env_config (a dict) as the one positional argument; gymnasium passes kwargs
        keys, self.cfg = split_config({**dict(env_config or {}), **config})
        self.population, self.population_seed = keys["population"], keys["population_seed"]
        self.observation_space = observation_space(self.cfg)
        self.action_space = gym.spaces.Discrete(self.cfg.candidates)
        # the catalogue and the service's knowledge now, not in the first reset
        self.known = logged(self.cfg, keys["log_seed"], keys["log_users"])

    def _observe(self) -> np.ndarray:
        view = self.sessions.view()
        self.offered = service_candidates(view, self.known)
        return observe(view, self.known, self.offered)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        user = options.get("user", int(self.np_random.integers(self.population)))
        session = options.get("session", int(self.np_random.integers(self.cfg.max_sessions)))
        self.sessions = Sessions(self.cfg, self.population_seed, np.array([user]), np.array([session]))
        return self._observe()[0], {"user": user, "session": session}

    def step(self, action):
        s = self.sessions
        track = self.offered[:, int(action)]
        repeat, same = s.is_played(track[:, None])[:, 0], s.cat.artist[track] == s.cat.artist[s.last]
        listened = s.play(track)
        info = {k: v[0] for k, v in _info(s, listened, track, repeat, same).items()}
        terminated = bool(s.done[0])
        return self._observe()[0], float(listened[0]), terminated, False, info


class MusicVectorEnv(gym.vector.VectorEnv):
    """`num_envs` sessions stepped by one `Sessions` batch; an env whose session ended is reset on
    the next step (gymnasium's next-step autoreset: that step's reward is 0 and not part of an
    episode). Each reset draws a fresh (user, session) from the env's RNG. Keys as MusicSessionEnv's."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, **config):
        keys, self.cfg = split_config(config)
        self.num_envs, self.population, self.population_seed = num_envs, keys["population"], keys["population_seed"]
        self.known = logged(self.cfg, keys["log_seed"], keys["log_users"])
        self.single_observation_space = observation_space(self.cfg)
        self.single_action_space = gym.spaces.Discrete(self.cfg.candidates)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.rng = np.random.default_rng()

    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.rng.integers(self.population, size=n), self.rng.integers(self.cfg.max_sessions, size=n)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.sessions = Sessions(self.cfg, self.population_seed, *self._draw(self.num_envs))
        self.needs_reset = np.zeros(self.num_envs, bool)
        return self._observe(), {}

    def _observe(self) -> np.ndarray:
        view = self.sessions.view()
        self.offered = service_candidates(view, self.known)
        return observe(view, self.known, self.offered)

    def step(self, actions):
        s, n = self.sessions, self.num_envs
        track = self.offered[np.arange(n), np.asarray(actions, np.int64)]
        repeat, same = s.is_played(track[:, None])[:, 0], s.cat.artist[track] == s.cat.artist[s.last]
        s.done |= self.needs_reset  # sessions waiting for their reset play nothing
        listened = s.play(track)
        reward = np.where(self.needs_reset, 0.0, listened)
        terminated = s.done & ~self.needs_reset
        if self.needs_reset.any():  # replace the finished sessions with fresh ones
            rows = np.flatnonzero(self.needs_reset)
            fresh = Sessions(self.cfg, self.population_seed, *self._draw(len(rows)))
            for name in STATE:
                getattr(s, name)[rows] = getattr(fresh, name)
            s._oracle = None
            terminated[rows] = False
        self.needs_reset = terminated.copy()
        info = _info(s, listened, track, repeat, same)
        return self._observe(), reward, terminated, np.zeros(n, bool), info


# ----------------------------------------------------------------------------- logs


def write_log(path: str | Path, rows: dict) -> Path:
    """Session logs (user, session, step, track, listened, ...) as Parquet, for offline training."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


# ----------------------------------------------------------------------------- whole populations


@dataclasses.dataclass
class Outcome:
    """Every session a population had under one recommender: one entry per session."""

    user: np.ndarray
    session: np.ndarray
    tracks: np.ndarray  # tracks played (the first included)
    time: np.ndarray  # sum of listened fractions, in tracks
    artists: np.ndarray  # distinct artists
    played: list  # per session, the track ids in order
    listened: list  # per session, the listened fractions
    population: int = -1  # the users' population seed


def simulate(cfg: MusicConfig, recommend, seed: int, users: np.ndarray, first_session: int = 0, on_end=None) -> Outcome:
    """Runs `users` of population `seed` through their sessions with `recommend(view) -> (N,) track
    ids`, where view is the live sessions' SessionView (the Sessions themselves only for the
    TRUTH_READERS: the oracle and the logging policy). A session's batch shrinks as sessions end, so
    long sessions cost what they play. Sessions are numbered from `first_session`: the same users in
    another period (the A/B's pre-experiment sessions) draw starts, patience and returns independent
    of sessions 0, 1, ... `on_end(view)`, if given, hears of the sessions that just ended (an HTTP
    arm's /last)."""
    truth = isinstance(recommend, TRUTH_READERS)
    parts, active = [], np.asarray(users, np.int64)
    for number in range(first_session, first_session + cfg.max_sessions):
        if not len(active):
            break
        batch = Sessions(cfg, seed, active, np.full(len(active), number))
        finished = []
        while len(batch.user):
            batch.play(recommend(batch if truth else batch.view()))
            if batch.done.any():
                finished.append(batch.take(np.flatnonzero(batch.done)))
                if on_end is not None:
                    on_end(finished[-1].view())
                batch = batch.take(np.flatnonzero(~batch.done))
        ended = _concat(finished)
        parts.append(ended)
        mean = ended.listened.sum(1) / np.maximum(ended.steps, 1)
        again = uniform(seed, "return", ended.user, number) < cfg.return_base + cfg.return_gain * mean
        active = np.sort(ended.user[again])
    return dataclasses.replace(_outcome(parts), population=int(seed))


def _concat(batches: list) -> Sessions:
    out = object.__new__(Sessions)
    out.__dict__.update(batches[0].__dict__)
    for name in STATE:
        setattr(out, name, np.concatenate([getattr(b, name) for b in batches]))
    out._oracle = None
    return out


def _outcome(parts: list) -> Outcome:
    user = np.concatenate([p.user for p in parts])
    session = np.concatenate([p.session for p in parts])
    played = np.concatenate([p.played for p in parts])
    listened = np.concatenate([p.listened for p in parts])
    steps = np.concatenate([p.steps for p in parts])
    artist = np.where(played >= 0, parts[0].cat.artist[np.maximum(played, 0)], -1)
    ordered = np.sort(artist, 1)
    distinct = ((ordered[:, 1:] != ordered[:, :-1]) & (ordered[:, 1:] >= 0)).sum(1) + (ordered[:, 0] >= 0)
    order = np.lexsort((session, user))
    return Outcome(
        user=user[order],
        session=session[order],
        tracks=steps[order],
        time=listened.sum(1)[order],
        artists=distinct[order],
        played=[played[i, : steps[i]] for i in order],
        listened=[listened[i, : steps[i]] for i in order],
    )


def log_rows(outcome: Outcome, arm: str = "") -> dict:
    """Columns of a session log: one row per played track."""
    lengths = np.array([len(p) for p in outcome.played])
    return {
        "arm": np.repeat(arm, lengths.sum()),
        "user": np.repeat(outcome.user, lengths),
        "session": np.repeat(outcome.session, lengths),
        "step": np.concatenate([np.arange(n) for n in lengths]),
        "track": np.concatenate(outcome.played),
        "listened": np.concatenate(outcome.listened),
        "population": np.full(lengths.sum(), outcome.population),  # what a model trained on the log has seen
    }
