"""`music`: an embedding recommender for the music simulator, trained offline on session logs.

The log is what a logging policy (a uniformly random candidate of the simulator's candidate
generator, envs/music.LoggingPolicy) made `log_users` users of population `log_seed`
listen to. The model predicts the fraction of the next track listened to:

    logit = <context[last] + first_emb[first], target[next]> + bias[next] + repeat * plays(artist(next))

trained with binary cross-entropy on the listened fraction (AdamW, a schedule on the learning rate).
It recommends the unplayed track with the highest logit among the tracks the log has seen.

`score` is a validation figure measured in the simulator itself: the mean (over users) of the
mean listening time per session when the model serves `valid_users` users of population
`valid_seed`. The A/B (`python -m platform.ab music embed:EXPERIMENT ...`) is the test, on its
own population seed: model.npz records the populations the model was trained and selected on, and
the A/B refuses to test it on either.
"""

import dataclasses
from pathlib import Path

import numpy as np
import ray.tune
import torch
import torch.nn.functional as F
from torch import nn

from envs import music
from trainables import metrics as m
from trainables import runtime, schedules
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.music import arms

MUTABLE_FIELDS = ("lr", "weight_decay")
ARCHITECTURE_FIELDS = ("sim", "dim", "log_users", "log_seed", "log")
MODEL_FILE = "model.npz"  # what the A/B's embed arm loads from a checkpoint
# a log's columns (envs/music.log_rows): population is the seed of its users, the ones a model trained on it has seen
LOG_COLUMNS = {"user", "session", "step", "track", "listened", "population"}


@dataclasses.dataclass(frozen=True)
class MusicEmbedConfig:
    sim: dict = dataclasses.field(default_factory=dict)
    """Simulator settings (envs/music.MusicConfig) on top of its defaults; the A/B must use the same."""
    log: str = ""
    """A Parquet session log (columns user, session, step, track, listened) to train on; empty:
    generate one with the logging policy."""
    log_users: int = 5_000
    """Users of the generated log."""
    log_seed: int = 101
    """Population seed of the generated log's users (the A/B's default population is 0)."""
    valid_users: int = 1_000
    """Users the validation score is simulated on."""
    valid_seed: int = 102
    """Population seed of the validation users."""
    dim: int = 32
    """Embedding size."""
    lr: float = 3e-3
    """AdamW learning rate; lr_schedule multiplies it over training progress."""
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "cosine", "start": 1.0, "end": 0.1})
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    batch_size: int = 2048
    steps_per_iteration: int = 25
    """Gradient steps per Tune iteration (each iteration also simulates the validation users)."""
    iterations: int = 16
    """Validation time per session peaks after a few hundred steps and then declines as the
    pointwise loss keeps falling (measured: 5.6 at 200 steps, 4.2 at 1,500), so training is short
    and every iteration is scored."""
    checkpoint_every: int = 1
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 0
    """Intra-op threads; 0: the CPUs Ray gave the trial."""

    def __post_init__(self):
        check_range(self, "[1, inf)", "log_users valid_users dim batch_size steps_per_iteration iterations")
        check_range(self, "[1, inf)", "checkpoint_every")
        check_range(self, "(0, inf)", "lr")
        check_range(self, "[0, inf)", "weight_decay")
        object.__setattr__(self, "lr_schedule", schedules.validate(self.lr_schedule, "lr_schedule"))
        try:
            music.parse(self.sim)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"sim: {err}") from None
        if self.log and not Path(self.log).expanduser().exists():
            raise ConfigError(f"log {self.log!r} does not exist; give a Parquet session log or leave log empty")

    @property
    def simulator(self) -> music.MusicConfig:
        return music.parse(self.sim)


def parse(config: dict) -> MusicEmbedConfig:
    return from_dict(MusicEmbedConfig, config, "music")


def check(config: dict) -> MusicEmbedConfig:
    """Driver-side preflight: the config parses and a given log has the columns training needs."""
    cfg = parse(config)
    if cfg.log:
        import pyarrow.parquet as pq

        columns = set(pq.read_schema(Path(cfg.log).expanduser()).names)
        missing = LOG_COLUMNS - columns
        if missing:
            raise ConfigError(f"log {cfg.log}: missing columns {sorted(missing)}; write logs with platform.ab --log")
    return cfg


def load_log(cfg: MusicEmbedConfig) -> dict:
    """The training log: the Parquet file, or a generated one (deterministic in log_seed)."""
    if cfg.log:
        import pandas as pd

        frame = pd.read_parquet(Path(cfg.log).expanduser())
        missing = LOG_COLUMNS - set(frame.columns)
        if missing:
            raise ConfigError(f"log {cfg.log}: missing columns {sorted(missing)}; write logs with platform.ab --log")
        return {c: frame[c].to_numpy() for c in frame.columns}
    outcome = music.simulate(cfg.simulator, music.LoggingPolicy(cfg.log_seed), cfg.log_seed, np.arange(cfg.log_users))
    return music.log_rows(outcome)


def log_population(log: dict) -> int:
    """The population seed of a log's users (one per log: a model's training population is one seed)."""
    seeds = np.unique(np.asarray(log["population"]))
    if len(seeds) != 1:
        raise ConfigError(f"the log mixes populations {seeds.tolist()}; train on one population's log")
    return int(seeds[0])


def examples(log: dict, sim: music.MusicConfig) -> dict[str, np.ndarray]:
    """One example per logged track after a session's first: (last, first, artist plays, next, listened)."""
    cat = music.catalogue_of(sim)
    order = np.lexsort((log["step"], log["session"], log["user"]))
    user, session, step = (np.asarray(log[c])[order] for c in ("user", "session", "step"))
    track, listened = np.asarray(log["track"])[order], np.asarray(log["listened"], np.float32)[order]
    if track.max(initial=0) >= cat.size:
        raise ConfigError(f"the log has track {track.max()} but the simulator's catalogue has {cat.size} tracks")
    start = np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])]
    head = np.maximum.accumulate(np.where(start, np.arange(len(track)), 0))  # index of each session's first row
    artist = cat.artist[track]
    # plays of the next track's artist earlier in its session: a running count per (session, artist)
    key = head * sim.artists + artist
    order2 = np.lexsort((np.arange(len(key)), key))
    runs = np.r_[True, key[order2][1:] != key[order2][:-1]]
    rank = np.arange(len(key)) - np.maximum.accumulate(np.where(runs, np.arange(len(key)), 0))
    plays = np.empty(len(key), np.int64)
    plays[order2] = rank
    keep = ~start
    return {
        "last": track[np.flatnonzero(keep) - 1],
        "first": track[head[keep]],
        "plays": plays[keep].astype(np.float32),
        "next": track[keep],
        "listened": listened[keep],
    }


class ListenModel(nn.Module):
    def __init__(self, tracks: int, dim: int, prior: float):
        super().__init__()
        self.context = nn.Embedding(tracks, dim)
        self.first = nn.Embedding(tracks, dim)
        self.target = nn.Embedding(tracks, dim)
        self.bias = nn.Embedding(tracks, 1)
        self.repeat = nn.Parameter(torch.zeros(()))
        for table in (self.context, self.first, self.target):
            nn.init.normal_(table.weight, std=0.1 / dim**0.5)
        nn.init.constant_(self.bias.weight, prior)  # the log's mean listened fraction, as a logit

    def forward(self, last, first, plays, nxt) -> torch.Tensor:
        query = self.context(last) + self.first(first)  # (B, dim)
        return (query * self.target(nxt)).sum(1) + self.bias(nxt).squeeze(1) + self.repeat * plays  # (B,)

    def arm(self, seen: np.ndarray) -> arms.Embedding:
        """The numpy recommender of the current weights; tracks the log never showed score -inf."""
        bias = _numpy(self.bias)[:, 0].copy()
        bias[~seen] = -np.inf
        tables = (_numpy(self.context), _numpy(self.first), _numpy(self.target))
        return arms.Embedding(*tables, bias, float(self.repeat.detach()))


def _numpy(table: nn.Embedding) -> np.ndarray:
    return table.weight.detach().cpu().numpy()


def session_score(cfg: MusicEmbedConfig, arm) -> dict:
    """Validation figures of `arm` on valid_users users of population valid_seed."""
    out = music.simulate(cfg.simulator, arm, cfg.valid_seed, np.arange(cfg.valid_users))
    sessions = np.bincount(out.user, minlength=cfg.valid_users)
    per_user = np.bincount(out.user, out.time, cfg.valid_users) / np.maximum(sessions, 1)
    return {
        m.SCORE: float(per_user.mean()),
        m.split_metric(m.VALID, "time_per_session"): float(per_user.mean()),
        m.split_metric(m.VALID, "tracks_per_session"): float(out.tracks.mean()),
        m.split_metric(m.VALID, "sessions_per_user"): float(sessions.mean()),
    }


class MusicEmbedTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        cpus, gpus = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        self.device = runtime.choose_device(cfg.device, gpus)
        self.rng = runtime.seed_everything(cfg.seed)
        log = load_log(cfg)
        self.populations = {"log": log_population(log), "valid": cfg.valid_seed}
        if self.populations["log"] == cfg.valid_seed:
            raise ConfigError(f"valid_seed {cfg.valid_seed} is the log's population: select on other users")
        data = examples(log, cfg.simulator)
        self.data = {k: torch.as_tensor(v, device=self.device) for k, v in data.items()}
        tracks = music.catalogue_of(cfg.simulator).size
        self.seen = np.zeros(tracks, bool)
        self.seen[data["next"]] = True
        mean = float(np.clip(data["listened"].mean(), 1e-3, 1 - 1e-3))
        self.model = ListenModel(tracks, cfg.dim, float(np.log(mean / (1 - mean)))).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step_count = 0

    def step(self) -> dict:
        cfg, n = self.cfg, len(self.data["next"])
        total = cfg.iterations * cfg.steps_per_iteration
        losses = []
        for _ in range(cfg.steps_per_iteration):
            rows = torch.randint(n, (cfg.batch_size,), generator=self.generator).to(self.device)
            logits = self.model(*(self.data[k][rows] for k in ("last", "first", "plays", "next")))
            loss = F.binary_cross_entropy_with_logits(logits, self.data["listened"][rows])
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * schedules.value(cfg.lr_schedule, self.step_count / total)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step_count += 1
            losses.append(loss.detach())
        return {
            **session_score(cfg, self.model.arm(self.seen)),
            m.TRAIN_LOSS: torch.stack(losses).mean().item(),
            m.TRAIN_LR: self.optimizer.param_groups[0]["lr"],
            m.TRAIN_STEPS: self.step_count,
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
            "done": self.step_count >= total,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {
                "config": to_dict(self.cfg),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step_count": self.step_count,
                "rng": runtime.rng_state(self.rng, self.generator),
            },
            Path(checkpoint_dir) / "state.pt",
        )
        arm = dataclasses.replace(self.model.arm(self.seen), populations=self.populations)
        arm.save(Path(checkpoint_dir) / MODEL_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device, weights_only=False)
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = state["step_count"]
        runtime.restore_rng_state(state["rng"], self.rng, self.generator)

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, parse, MUTABLE_FIELDS)
