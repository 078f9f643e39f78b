"""`al`: a learned batch active-learning policy (REINFORCE with a learned baseline).

One scoring network is shared by every candidate: score = f(state features, candidate features),
the policy is softmax(score / temperature) over the M candidates envs/active offers, and K picks
without replacement (picked points leave the candidates) make a batch. Each pick's return is the
sum of the centred batch rewards from its batch on (validation-accuracy gains); a value network of
the state is the baseline; an entropy bonus keeps the policy from collapsing onto one region. Its
weight and the temperature follow schedules over training (trainables/schedules.py), so PBT and
Optuna search them like any other.

Meta-training uses `train_datasets` (generated tasks and scikit-learn sets); `held_out` is never
trained on or selected on. `score` (validation): the greedy policy's area under the validation
accuracy curve minus margin sampling's, on `valid_seeds` fresh splits of every training dataset.
`test()` (once, after selection): on `test_seeds` splits of the held-out dataset, the policy's
test AULC and its paired differences to margin and random.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray.tune
import torch
from torch import nn

from envs import active
from trainables import metrics as m
from trainables import runtime, schedules
from trainables.active import strategies
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.stats import confidence_interval

MUTABLE_FIELDS = ("lr", "entropy", "temperature")
ARCHITECTURE_FIELDS = ("hidden", "candidates", "prior")
VALID_SEED, TEST_SEED = 10_000, 20_000
MARGIN = 0  # index of the margin among envs/active's candidate features  # split seeds: training episodes use 0..9,999


@dataclasses.dataclass(frozen=True)
class ALConfig:
    train_datasets: str = "gen-easy,gen-medium,gen-hard,breast_cancer,wine,iris"
    """Comma-separated datasets of envs/active.DATASETS the policy is trained and selected on."""
    held_out: str = "digits"
    """The dataset it is tested on: never trained on, never selected on."""
    batch: int = 10
    budget: int = 100
    start: int = 20
    candidates: int = 32
    candidate_sampling: str = "margin_half"
    """How the env draws the candidates (envs/active.CANDIDATE_SAMPLING): margin_half hands the
    policy margin's top half; uniform draws them all at random from the pool."""
    classifier: str = "logreg"
    hidden: int = 64
    prior: float = 5.0
    """The policy starts as soft margin sampling: score = prior x (-margin) + the network, whose
    output layer starts at 0, so learning changes a known strategy rather than a random one
    (measured: from scratch, 100 training episodes left a policy 0.14 AULC below random on digits).
    0: start from scratch."""
    lr: float = 1e-3
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"kind": "constant", "start": 1.0})
    entropy: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 0.02, "end": 0.002})
    """Entropy bonus weight over training progress."""
    temperature: dict = dataclasses.field(default_factory=lambda: {"kind": "exp", "start": 1.0, "end": 0.3})
    """Softmax temperature over training progress (sampling only; evaluation is greedy)."""
    value_coef: float = 0.5
    episodes_per_iteration: int = 4
    iterations: int = 25
    valid_seeds: int = 2
    valid_every: int = 1
    """Validate every N iterations and at the last (between them the last figures are reported
    again): validation plays valid_seeds x training datasets episodes, more than an iteration's
    training when the datasets are many."""
    test_seeds: int = 20
    checkpoint_every: int = 1
    seed: int = 0
    torch_threads: int = 0

    def __post_init__(self):
        check_range(self, "[1, inf)", "batch budget candidates hidden episodes_per_iteration iterations")
        check_range(self, "[1, inf)", "valid_seeds valid_every test_seeds checkpoint_every")
        if self.candidate_sampling not in active.CANDIDATE_SAMPLING:
            raise ValueError(f"candidate_sampling must be one of {', '.join(active.CANDIDATE_SAMPLING)}, "
                             f"got {self.candidate_sampling!r}")  # fmt: skip
        check_range(self, "[2, inf)", "start")
        check_range(self, "(0, inf)", "lr")
        for name in ("lr_schedule", "entropy", "temperature"):
            object.__setattr__(self, name, schedules.validate(getattr(self, name), name))
        names = self.datasets
        bad = [d for d in (*names, self.held_out) if d not in active.DATASETS]
        if bad:
            raise ValueError(f"unknown dataset {bad[0]!r}; choose from {', '.join(active.DATASETS)}")
        if self.held_out in names:
            raise ValueError(f"held_out {self.held_out!r} is also in train_datasets; leave it out of them")

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(d.strip() for d in self.train_datasets.split(",") if d.strip())

    def env(self, dataset: str) -> active.ActiveConfig:
        return active.ActiveConfig(dataset=dataset, batch=self.batch, budget=self.budget, start=self.start,
                                   candidates=self.candidates, candidate_sampling=self.candidate_sampling,
                                   classifier=self.classifier)  # fmt: skip


def parse(config: dict) -> ALConfig:
    try:
        return from_dict(ALConfig, config, "al")
    except ValueError as err:
        raise ConfigError(str(err)) from None


class Scorer(nn.Module):
    def __init__(self, hidden: int, prior: float = 0.0):
        super().__init__()
        width = active.STATE_FEATURES + active.CANDIDATE_FEATURES
        self.score = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 1))  # fmt: skip
        self.value = nn.Sequential(nn.Linear(active.STATE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.prior = prior
        if prior:
            nn.init.zeros_(self.score[-1].weight)
            nn.init.zeros_(self.score[-1].bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, STATE + M * CAND) -> (scores (B, M), values (B,))."""
        state = obs[:, : active.STATE_FEATURES]
        cands = obs[:, active.STATE_FEATURES :].reshape(len(obs), -1, active.CANDIDATE_FEATURES)  # (B, M, F)
        joint = torch.cat([state[:, None, :].expand(-1, cands.shape[1], -1), cands], 2)
        scores = self.score(joint).squeeze(2) - self.prior * cands[:, :, MARGIN]  # (B, M)
        return scores, self.value(state).squeeze(1)


class Decisions:
    """The learned policy's picks: candidate features of every pick with the labels used so far."""

    def __init__(self):
        self.rows: list[np.ndarray] = []

    def record(self, obs: np.ndarray, action: int) -> None:
        cand = obs[active.STATE_FEATURES :].reshape(-1, active.CANDIDATE_FEATURES)[action]
        self.rows.append(np.concatenate([[obs[active.STATE_FEATURES - 3]], cand]))  # budget used, features


DECISION_BINS = 5  # picks are summarised by fifth of the label budget used


def decision_bins(rows: np.ndarray, bins: int = DECISION_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Decisions' rows (picks, 1 + CANDIDATE_FEATURES) -> (sums (bins, CANDIDATE_FEATURES) of the
    picked candidates' features, counts (bins,) of picks), by the fraction of the budget used."""
    which = np.minimum((rows[:, 0] * bins).astype(int), bins - 1)
    sums = np.zeros((bins, rows.shape[1] - 1))
    np.add.at(sums, which, rows[:, 1:])
    return sums, np.bincount(which, minlength=bins)


def play(model: Scorer, env: active.ActiveLearningEnv, split: int, temperature: float, rng: torch.Generator):
    """One training episode, sampling from softmax(scores / temperature); returns (curve, [(obs, action, reward)])."""
    obs, _ = env.reset(options={"split": split}, seed=split)
    steps, done = [], False
    while not done:
        with torch.no_grad():
            scores, _ = model(torch.as_tensor(obs[None]))
        probs = torch.softmax(scores[0] / temperature, 0)
        action = int(torch.multinomial(probs, 1, generator=rng))
        next_obs, reward, done, _, _ = env.step(action)
        steps.append((obs, action, reward))
        obs = next_obs
    return env.learner.curve, steps


def load_policy(checkpoint: str) -> Callable[[np.ndarray], np.ndarray]:
    """Greedy actions (B,) for observations (B, obs) of the policy in a checkpoint folder: an `al`
    trial's scoring network, or the RL module of an RLlib model (ppo) trained on the env."""
    if (Path(checkpoint) / "state.pt").exists():
        state = torch.load(Path(checkpoint) / "state.pt", weights_only=False)
        model = Scorer(state["config"]["hidden"], state["config"]["prior"])
        model.load_state_dict(state["model"])
        return scorer_actions(model.eval())
    from trainables.rl import rllib

    module = rllib.module_from_checkpoint(checkpoint)
    return lambda obs: rllib.greedy_actions(module, obs)


def scorer_actions(model: Scorer) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(obs, dtype=torch.float32))[0].argmax(1).numpy()

    return act


class PolicyStrategy:
    """A greedy policy (observations (B, obs) -> actions (B,)) as an al_strategies-style runner,
    choosing among the env's candidates."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray]):
        self.act = act

    def curve(self, cfg: active.ActiveConfig, split: int, decisions: Decisions | None = None) -> list:
        env = active.ActiveLearningEnv(**dataclasses.asdict(cfg))
        obs, _ = env.reset(options={"split": split}, seed=split)
        done = False
        while not done:
            action = int(self.act(obs[None])[0])
            if decisions is not None:
                decisions.record(obs, action)
            obs, _, done, _, _ = env.step(action)
        return env.learner.curve


class ActiveLearningTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        cpus, _ = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        self.rng = runtime.seed_everything(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.model = Scorer(cfg.hidden, cfg.prior)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.envs = {d: active.ActiveLearningEnv(**dataclasses.asdict(cfg.env(d))) for d in cfg.datasets}
        self.episodes = 0
        self.margin_cache: dict = {}
        self.validation: dict = {}  # the last validation figures

    def progress(self) -> float:
        return self.iteration / self.cfg.iterations

    def step(self) -> dict:
        cfg = self.cfg
        temperature = schedules.value(cfg.temperature, self.progress())
        beta = schedules.value(cfg.entropy, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * schedules.value(cfg.lr_schedule, self.progress())
        observations, actions, returns = [], [], []
        for _ in range(cfg.episodes_per_iteration):
            dataset = cfg.datasets[int(self.rng.integers(len(cfg.datasets)))]
            split = int(self.rng.integers(VALID_SEED))
            _, steps = play(self.model, self.envs[dataset], split, temperature, self.generator)
            rewards = np.array([r for _, _, r in steps])
            observations += [o for o, _, _ in steps]
            actions += [a for _, a, _ in steps]
            returns += np.cumsum(rewards[::-1])[::-1].tolist()  # return-to-go, undiscounted
            self.episodes += 1
        obs = torch.as_tensor(np.stack(observations))
        scores, values = self.model(obs)
        logp = torch.log_softmax(scores / temperature, 1)
        taken = logp.gather(1, torch.as_tensor(actions)[:, None]).squeeze(1)
        target = torch.as_tensor(np.asarray(returns, np.float32))
        advantage = target - values.detach()
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        entropy = -(logp.exp() * logp).sum(1).mean()
        loss = -(taken * advantage).mean() - beta * entropy + cfg.value_coef * ((values - target) ** 2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        last = self.iteration + 1 >= cfg.iterations
        if last or not self.validation or (self.iteration + 1) % cfg.valid_every == 0:
            self.validation = self.validate()
        return {
            **self.validation,
            m.TRAIN_LOSS: loss.item(),
            "train/entropy": entropy.item(),
            "train/temperature": temperature,
            "train/entropy_weight": beta,
            "train/episodes": self.episodes,
            **{m.HPARAM_PREFIX + "lr": self.optimizer.param_groups[0]["lr"]},
            "done": last,
        }

    def _margin(self, dataset: str, split: int) -> list:
        key = (dataset, split)
        if key not in self.margin_cache:
            curve = strategies.episode(self.cfg.env(dataset), strategies.Uncertainty("margin"), split)
            self.margin_cache[key] = curve
        return self.margin_cache[key]

    def validate(self) -> dict:
        """score: greedy policy's validation AULC minus margin's, on fresh splits of the training sets."""
        policy, diffs, aulcs = PolicyStrategy(scorer_actions(self.model)), [], []
        for dataset in self.cfg.datasets:
            env = self.cfg.env(dataset)
            for i in range(self.cfg.valid_seeds):
                split = VALID_SEED + i
                mine = strategies.summarise(policy.curve(env, split), 1.0, self.cfg.start, split=1)["aulc"]
                ref = strategies.summarise(self._margin(dataset, split), 1.0, self.cfg.start, split=1)["aulc"]
                diffs.append(mine - ref)
                aulcs.append(mine)
        return {m.SCORE: float(np.mean(diffs)), "valid/aulc": float(np.mean(aulcs)),
                "valid/aulc_minus_margin": float(np.mean(diffs))}  # fmt: skip

    def test(self) -> dict:
        """Once, on the selected trial: the held-out dataset's test AULC, paired against margin and random."""
        cfg, env = self.cfg, self.cfg.env(self.cfg.held_out)
        policy = PolicyStrategy(scorer_actions(self.model))
        mine, margin, rand = [], [], []
        for i in range(cfg.test_seeds):
            split = TEST_SEED + i
            full = strategies.full_accuracy(env, split)
            mine.append(strategies.summarise(policy.curve(env, split), full, cfg.start)["aulc"])
            margin.append(strategies.summarise(strategies.episode(env, strategies.Uncertainty("margin"),
                                                                        split), full, cfg.start)["aulc"])  # fmt: skip
            rand.append(strategies.summarise(strategies.episode(env, strategies.Random(), split), full,
                                                cfg.start)["aulc"])  # fmt: skip
        mine, margin, rand = map(np.asarray, (mine, margin, rand))
        out = {"test/aulc": mine.mean(), "test/margin_aulc": margin.mean(), "test/random_aulc": rand.mean()}
        for name, ref in (("margin", margin), ("random", rand)):
            _, _, low, high = confidence_interval(mine - ref)
            out.update({f"test/minus_{name}": (mine - ref).mean(), f"test/minus_{name}_low": low,
                        f"test/minus_{name}_high": high})  # fmt: skip
        return out

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {
                "config": to_dict(self.cfg),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "episodes": self.episodes,
                "rng": runtime.rng_state(self.rng, self.generator),
            },
            Path(checkpoint_dir) / "state.pt",
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", weights_only=False)
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.episodes = state["episodes"]
        runtime.restore_rng_state(state["rng"], self.rng, self.generator)

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, parse, MUTABLE_FIELDS)
