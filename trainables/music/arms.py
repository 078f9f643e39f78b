"""Recommenders for the music simulator (envs/music.py): the arms an A/B compares.

Each arm is a callable `arm(sessions) -> (N,) track ids` over a batch of live sessions. Only the
oracle reads the hidden session vector; every other arm sees what a real service sees: the
user, the tracks played so far and how much of each was listened to.
"""

import dataclasses
import http.client
import json
import urllib.parse
from pathlib import Path

import numpy as np

from envs import music

HEURISTICS = ("random", "toppop", "sticky", "sticky-fallback", "i2i", "oracle")


def _first_unplayed(sessions: music.Sessions, options: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the first option per row not played in its session, and whether there was one."""
    fresh = ~sessions.is_played(options)  # (N, K)
    found = fresh.any(1)
    return options[np.arange(len(options)), fresh.argmax(1)], found


class Random:
    """A uniformly random track (a hash of the session's step: the same in every arm's run)."""

    def __call__(self, s: music.Sessions) -> np.ndarray:
        u = music.uniform(s.seed, "pad", s.user, s.session, s.steps)
        return np.minimum((u * s.cat.size).astype(np.int64), s.cat.size - 1)


class TopPopular:
    """The most popular track not played in this session."""

    def __call__(self, s: music.Sessions) -> np.ndarray:
        top = s.cat.by_popularity[: s.cfg.max_steps + 1]
        return _first_unplayed(s, np.broadcast_to(top, (len(s.user), len(top))))[0]


@dataclasses.dataclass
class StickyArtist:
    """A random unplayed track of the last track's artist. When the artist has none left: a random
    track, or with `fallback` (the course's) one of the session's first track's artist first."""

    fallback: bool = False

    def _of_artist(self, s: music.Sessions, tracks: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
        cat = s.cat
        a = cat.artist[tracks]
        start, size = cat.artist_offsets[a], cat.artist_offsets[a + 1] - cat.artist_offsets[a]
        u = music.uniform(s.seed, "pick", s.user[:, None], s.session[:, None], s.steps[:, None],
                          salt + np.arange(16)[None, :])  # fmt: skip
        options = cat.artist_tracks[start[:, None] + np.floor(u * size[:, None]).astype(np.int64)]
        # then the artist's tracks in catalogue order, so a small artist is used up before giving up
        ordered = cat.artist_tracks[np.minimum(start[:, None] + np.arange(32)[None, :], (start + size - 1)[:, None])]
        return _first_unplayed(s, np.concatenate([options, ordered], 1))

    def __call__(self, s: music.Sessions) -> np.ndarray:
        out, found = self._of_artist(s, s.last, 100)
        if self.fallback and not found.all():
            first, found_first = self._of_artist(s, s.first, 200)
            out, found = np.where(found, out, first), found | found_first
        return np.where(found, out, Random()(s))


@dataclasses.dataclass
class ItemToItem:
    """The track most often listened to (>= half) right after the last track in logged sessions,
    among those not played yet; the most popular unplayed track where the logs know none."""

    following: np.ndarray  # (T, K) next tracks by co-listen count, -1 padded

    @staticmethod
    def from_log(log: dict, tracks: int, k: int = 20, threshold: float = 0.5) -> "ItemToItem":
        user, session, step = (np.asarray(log[c]) for c in ("user", "session", "step"))
        track, listened = np.asarray(log["track"]), np.asarray(log["listened"])
        order = np.lexsort((step, session, user))
        track, listened, user, session = track[order], listened[order], user[order], session[order]
        same = (user[1:] == user[:-1]) & (session[1:] == session[:-1]) & (listened[1:] >= threshold)
        prev, nxt = track[:-1][same], track[1:][same]
        pairs, counts = np.unique(prev * tracks + nxt, return_counts=True)
        a, b = pairs // tracks, pairs % tracks
        order = np.lexsort((-counts, a))  # by source track, most co-listened first
        a, b = a[order], b[order]
        rank = np.arange(len(a)) - np.searchsorted(a, a)
        keep = rank < k
        following = np.full((tracks, k), -1, np.int64)
        following[a[keep], rank[keep]] = b[keep]
        return ItemToItem(following)

    def __call__(self, s: music.Sessions) -> np.ndarray:
        options = self.following[s.last]  # (N, K)
        fresh = (options >= 0) & ~s.is_played(np.maximum(options, 0))
        pick = options[np.arange(len(options)), fresh.argmax(1)]
        return np.where(fresh.any(1), pick, TopPopular()(s))


class Oracle:
    """Knows the hidden session vector: the track with the highest expected listened fraction."""

    def __call__(self, s: music.Sessions) -> np.ndarray:
        return s.expected_all().argmax(1)


@dataclasses.dataclass
class Embedding:
    """A trained embedding model (trainables/music/embedding.py): the unplayed track with the highest predicted
    listened fraction given the session's last and first tracks and its artists' plays."""

    context: np.ndarray  # (T, k) last track
    first: np.ndarray  # (T, k) first track
    target: np.ndarray  # (T, k)
    bias: np.ndarray  # (T,)
    repeat: float  # logit per earlier play of the artist

    @staticmethod
    def load(path: str | Path) -> "Embedding":
        with np.load(Path(path)) as z:
            return Embedding(z["context"], z["first"], z["target"], z["bias"], float(z["repeat"]))

    def scores(self, s: music.Sessions) -> np.ndarray:
        """(N, T) predicted logits, played tracks at -inf."""
        query = self.context[s.last] + self.first[s.first]  # (N, k)
        logits = query @ self.target.T + self.bias  # (N, T)
        rows, cols = np.nonzero(s.played >= 0)
        counts = np.zeros((len(s.user), s.cfg.artists), np.int64)
        np.add.at(counts, (rows, s.cat.artist[s.played[rows, cols]]), 1)
        logits = logits + self.repeat * counts[:, s.cat.artist]
        logits[rows, s.played[rows, cols]] = -np.inf
        return logits

    def __call__(self, s: music.Sessions) -> np.ndarray:
        out = np.empty(len(s.user), np.int64)
        for lo in range(0, len(out), 512):
            out[lo : lo + 512] = self.scores(s.take(np.arange(lo, min(lo + 512, len(out))))).argmax(1)
        return out


class Policy:
    """A learned policy over the env's candidates (dqn, qtable, or an RLlib model trained on
    tunelab/MusicSession-v0): the trial's trainable restored from its checkpoint, acting greedily on
    the observation the env would give (envs/music.Sessions.observe)."""

    def __init__(self, trainable):
        self.trainable = trainable

    @staticmethod
    def load(entry_point: str, config: dict, checkpoint: str) -> "Policy":
        module, _, name = entry_point.partition(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        if "num_env_runners" in config:  # an RLlib model: acting needs no env runners
            config = {**config, "num_env_runners": 0}
        trainable = cls(config=dict(config))
        trainable.restore(checkpoint)
        return Policy(trainable)

    def __call__(self, s: music.Sessions) -> np.ndarray:
        options = s.candidates()  # (N, M)
        action = np.asarray(self.trainable.greedy(s.observe(options)), np.int64)
        return options[np.arange(len(options)), action]


class Remote:
    """An HTTP recommender, as in the course: POST {"user", "track" (the last), "time" (its listened
    fraction)} as JSON to the URL, answered by {"track": next}. One kept-alive connection."""

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"arm {url!r}: an HTTP arm is http://HOST:PORT/PATH")
        self.url, self.path = url, parts.path or "/"
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)

    def ask(self, user: int, track: int, time: float) -> int:
        body = json.dumps({"user": user, "track": track, "time": time})
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.url} answered {response.status}: {payload[:200]!r}")
        return int(json.loads(payload)["track"])

    def __call__(self, s: music.Sessions) -> np.ndarray:
        last, time = s.last, s.last_listened
        out = np.array([self.ask(int(u), int(t), float(x)) for u, t, x in zip(s.user, last, time)], np.int64)
        if ((out < 0) | (out >= s.cat.size)).any():
            raise RuntimeError(f"{self.url} answered a track outside 0..{s.cat.size - 1}")
        return out

    def close(self) -> None:
        self.connection.close()


def heuristic(name: str, log: dict | None = None, tracks: int = 0):
    """The arm called `name` (one of HEURISTICS); i2i needs a session log."""
    if name == "i2i":
        return ItemToItem.from_log(log, tracks)
    return {
        "random": Random,
        "toppop": TopPopular,
        "sticky": StickyArtist,
        "sticky-fallback": lambda: StickyArtist(fallback=True),
        "oracle": Oracle,
    }[name]()


def candidate_policy(rng_seed: int):
    """A logging policy: a uniformly random one of the env's candidates (neighbours of the last and
    first track, the last artist, popular tracks), so logs cover what a recommender could choose."""

    def recommend(s: music.Sessions) -> np.ndarray:
        options = s.candidates()
        u = music.uniform(rng_seed, "pick", s.user, s.session, s.steps, 7)
        return options[np.arange(len(options)), np.minimum((u * options.shape[1]).astype(int), options.shape[1] - 1)]

    return recommend
