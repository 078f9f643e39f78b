"""Recommenders for the music simulator (envs/music.py): the arms an A/B compares.

Each arm is a callable `arm(view) -> (N,) track ids` over a batch of live sessions. `simulate`
hands every arm a `music.SessionView` (the user, the tracks played so far, how much of each was
listened to, their artists), and an arm built from logs holds a `music.Logged` (what a service
learned from another population's logged sessions): neither leads back to the simulator. Only
`oracle` (music.Oracle) is handed the simulator's sessions: it is the ceiling, not a service.
"""

import dataclasses
import functools
from pathlib import Path

import numpy as np

from envs import music
from trainables import runtime

HEURISTICS = ("random", "toppop", "sticky", "sticky-fallback", "i2i", "greedy", "oracle")
LOGGED = ("toppop", "i2i", "greedy")  # the heuristics built from a log population's sessions
CEILING = "oracle"
Oracle = music.Oracle
VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(music.SessionView))


def label(name: str) -> str:
    """An arm's name as every report prints it: the oracle marked as the ceiling it is."""
    return f"{name} (ceiling)" if name.split("#", 1)[0] == CEILING else name


def _first_unplayed(sessions: music.SessionView, options: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the first option per row not played in its session, and whether there was one."""
    fresh = ~sessions.is_played(options)  # (N, K)
    found = fresh.any(1)
    return options[np.arange(len(options)), fresh.argmax(1)], found


@dataclasses.dataclass
class Random:
    """A uniformly random track (a hash of the session's step: the same in every arm's run)."""

    stream: int = 0
    """Another stream is another random arm (an A/A test in the paired design needs two)."""

    def __call__(self, s: music.SessionView) -> np.ndarray:
        u = s.draw("pad", self.stream) if self.stream else s.draw("pad")
        return np.minimum((u * s.cat.size).astype(np.int64), s.cat.size - 1)


@dataclasses.dataclass
class TopPopular:
    """The track played most often in the logs (of another population) not played in this session."""

    known: music.Logged

    @property
    def populations(self) -> dict[str, int]:
        return self.known.populations

    def __call__(self, s: music.SessionView) -> np.ndarray:
        top = self.known.by_popularity[: s.played.shape[1] + 1]
        return _first_unplayed(s, np.broadcast_to(top, (len(s.user), len(top))))[0]


@dataclasses.dataclass
class StickyArtist:
    """A random unplayed track of the last track's artist. When the artist has none left: a random
    track, or with `fallback` (the course's) one of the session's first track's artist first."""

    fallback: bool = False

    def _of_artist(self, s: music.SessionView, tracks: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
        cat = s.cat
        a = cat.artist[tracks]
        start, size = cat.artist_offsets[a], cat.artist_offsets[a + 1] - cat.artist_offsets[a]
        options = cat.artist_options(a, s.draw("pick", salt + np.arange(16)[None, :]))
        # then the artist's tracks in catalogue order, so a small artist is used up before giving up
        ordered = cat.artist_tracks[np.minimum(start[:, None] + np.arange(32)[None, :], (start + size - 1)[:, None])]
        return _first_unplayed(s, np.concatenate([options, ordered], 1))

    def __call__(self, s: music.SessionView) -> np.ndarray:
        out, found = self._of_artist(s, s.last, 100)
        if self.fallback and not found.all():
            first, found_first = self._of_artist(s, s.first, 200)
            out, found = np.where(found, out, first), found | found_first
        return np.where(found, out, Random()(s))


@dataclasses.dataclass
class ItemToItem:
    """The track most often listened to (>= half) right after the last track in the logged sessions
    (music.Logged.following), among those not played yet; the logs' most played unplayed track
    where they know none."""

    known: music.Logged

    @property
    def populations(self) -> dict[str, int]:
        return self.known.populations

    def __call__(self, s: music.SessionView) -> np.ndarray:
        options = self.known.following[s.last]  # (N, K)
        fresh = (options >= 0) & ~s.is_played(np.maximum(options, 0))
        pick = options[np.arange(len(options)), fresh.argmax(1)]
        return np.where(fresh.any(1), pick, TopPopular(self.known)(s))


@dataclasses.dataclass
class Greedy:
    """The strongest simple policy over a learned arm's observation: one step ahead, the candidate
    (music.service_candidates) with the highest listened fraction predicted by a least-squares model,
    quadratic in the candidate features of the very observation an RL arm gets (music.observe),
    fitted on logged sessions (music.Logged.reward). A learned arm is a win only against it."""

    known: music.Logged

    @property
    def populations(self) -> dict[str, int]:
        return self.known.populations

    def __call__(self, s: music.SessionView) -> np.ndarray:
        options = music.service_candidates(s, self.known)  # (N, M)
        obs = music.observe(s, self.known, options)
        feats = obs[:, music.GLOBAL_FEATURES :].reshape(len(options), options.shape[1], music.CANDIDATE_FEATURES)
        predicted = music.quadratic(feats.astype(np.float64)) @ self.known.reward  # (N, M)
        return options[np.arange(len(options)), predicted.argmax(1)]


@dataclasses.dataclass
class Embedding:
    """A trained embedding model (trainables/music/embedding.py): the unplayed track with the highest predicted
    listened fraction given the session's last and first tracks and its artists' plays."""

    context: np.ndarray  # (T, k) last track
    first: np.ndarray  # (T, k) first track
    target: np.ndarray  # (T, k)
    bias: np.ndarray  # (T,)
    repeat: float  # logit per earlier play of the artist
    populations: dict = dataclasses.field(default_factory=dict)
    """Seeds of the populations it was trained ("log") and selected ("valid") on; empty: not recorded."""

    @staticmethod
    def load(path: str | Path) -> "Embedding":
        with np.load(Path(path)) as z:
            recorded = {k: int(z[k]) for k in ("log", "valid") if k in z.files}
            return Embedding(z["context"], z["first"], z["target"], z["bias"], float(z["repeat"]), recorded)

    def save(self, path: str | Path) -> None:
        tables = {k: getattr(self, k) for k in ("context", "first", "target", "bias", "repeat")}
        np.savez(Path(path), **tables, **self.populations)

    def scores(self, s: music.SessionView) -> np.ndarray:
        """(N, T) predicted logits, played tracks at -inf."""
        query = self.context[s.last] + self.first[s.first]  # (N, k)
        logits = query @ self.target.T + self.bias  # (N, T)
        rows, cols = np.nonzero(s.played >= 0)
        counts = np.zeros((len(s.user), s.cat.artists), np.int64)
        np.add.at(counts, (rows, s.artists[rows, cols]), 1)
        logits = logits + self.repeat * counts[:, s.cat.artist]
        logits[rows, s.played[rows, cols]] = -np.inf
        return logits

    def __call__(self, s: music.SessionView) -> np.ndarray:
        out = np.empty(len(s.user), np.int64)
        for lo in range(0, len(out), 512):
            rows = slice(lo, min(lo + 512, len(out)))
            part = music.SessionView(*(s.cat if f == "cat" else getattr(s, f)[rows] for f in VIEW_FIELDS))
            out[rows] = self.scores(part).argmax(1)
        return out


class Policy:
    """A learned policy over the env's candidates (dqn, qtable, or an RLlib model trained on
    tunelab/MusicSession-v0), restored from its checkpoint and acting greedily on the observation
    the env would give (music.observe over what the service learned from its training env's log
    population). It keeps only what acting needs: the network, never the trainable's training envs."""

    def __init__(self, act, known: music.Logged, populations: dict[str, int], checkpoint: str = ""):
        self.act, self.known = act, known  # act: observations (N, obs_dim) -> actions (N,)
        self.populations = populations  # {"train": ..., "log": ...} from the checkpoint's config
        self.checkpoint = checkpoint  # the folder it was restored from (ab.json records it)

    @staticmethod
    def load(entry_point: str, config: dict, checkpoint: str) -> "Policy":
        if "num_env_runners" in config:  # an RLlib model: its RL module alone (no algorithm, no env runners)
            from trainables.rl import rllib

            act = functools.partial(rllib.greedy_actions, rllib.module_from_checkpoint(checkpoint))
            env_config = music.with_populations(config.get("env_config"))
        else:
            module, _, name = entry_point.partition(":")
            cls = getattr(__import__(module, fromlist=[name]), name)
            trainable = runtime.standalone(cls, config)
            trainable.restore(checkpoint)
            vars(trainable).pop("rollout").close()  # its training envs: simulated users, not for acting
            act, env_config = trainable.greedy, trainable.cfg.env_config  # as restored: what the checkpoint recorded
        keys, sim = music.split_config(env_config)
        known = music.logged(sim, keys["log_seed"], keys["log_users"])
        return Policy(act, known, {"train": keys["population_seed"], "log": keys["log_seed"]}, str(checkpoint))

    def __call__(self, s: music.SessionView) -> np.ndarray:
        options = music.service_candidates(s, self.known)  # (N, M)
        action = np.asarray(self.act(music.observe(s, self.known, options)), np.int64)
        return options[np.arange(len(options)), action]


def heuristic(name: str, known: music.Logged | None = None):
    """The arm called `name` (one of HEURISTICS); those of LOGGED need what a service learned from logs."""
    if name in LOGGED:
        if known is None:
            raise ValueError(f"arm {name} learns from logged sessions: pass a music.Logged")
        return {"toppop": TopPopular, "i2i": ItemToItem, "greedy": Greedy}[name](known)
    return {
        "random": Random,
        "sticky": StickyArtist,
        "sticky-fallback": lambda: StickyArtist(fallback=True),
        "oracle": Oracle,
    }[name]()


def candidate_policy(rng_seed: int) -> music.LoggingPolicy:
    """The logging policy of the generated logs (music.LoggingPolicy)."""
    return music.LoggingPolicy(rng_seed)
