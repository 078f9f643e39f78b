"""Decision Transformer recommender trained offline on rating histories.

Each step t of a user's history is up to three tokens: return-to-go R_t (what the rest of the
history is worth), state s_t (what is known of the user before step t) and action a_t (the item).
A causal transformer reads them interleaved, (R_0, s_0, a_0, R_1, ...), and predicts a_t from the
last token of step t before a_t; the item embedding doubles as the output softmax. Evaluation
conditions on a high target return and generates N items per held-out user, never repeating one
they have seen. `tokens` ablates the sequence: "a" alone is a SASRec-like behaviour-cloning model.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
import ray.tune
import torch
from torch import nn
from torch.nn import functional as F

from trainables import metrics as m
from trainables import ratings, recsys, runtime, schedules
from trainables.config import ConfigError, check_range, from_dict, to_dict


@dataclasses.dataclass(frozen=True)
class DTConfig:
    # --- data
    data: str = "synthetic"
    """"synthetic" (generated with ground truth, cached) or the path of a ratings file."""
    data_format: str = "auto"
    """auto, tsv (user item rating timestep), goodreads or movielens."""
    synthetic_users: int = 3000
    """Users in the synthetic data."""
    synthetic_items: int = 400
    """Items in the synthetic data."""
    data_seed: int = 0
    """Seed of the synthetic data and of the user split: the same for every trial, so trials compare."""
    extreme_ratings: bool = False
    """Map ratings 4-5 to 5 and 1-3 to 1, as the research tried."""
    user_fraction: float = 1.0
    """Keep this fraction of users (0.8 is the research's 80/20 subsample)."""
    drop_short_users: bool = False
    """Leave out users with fewer than context_length + holdout interactions instead of failing."""
    eval_users: float = 0.1
    """Fraction of users held out for evaluation."""
    holdout: int = 5
    """Last interactions of each evaluation user hidden from training."""
    # --- model
    tokens: str = "rsa"
    """Tokens per step: any of r (return-to-go), s (state), a (action); "a" alone is a SASRec-like baseline."""
    state: str = "running"
    """running (mean and last rating, position) or constant (the research's constant state)."""
    context_length: int = 20
    """K: steps of history the transformer sees."""
    layers: int = 2
    """Transformer blocks."""
    heads: int = 2
    """Attention heads per block."""
    width: int = 64
    """Embedding width."""
    dropout: float = 0.1
    """Dropout in every block; PBT mutates it."""
    max_timestep: int = 1024
    """Timestep embeddings; later positions share the last one."""
    return_horizon: int = 1
    """Ratings ahead in a return-to-go (1: condition on the next rating, the strongest signal measured)."""
    return_scale: float = 2.0
    """Return-to-go scaling: the token sees (R / horizon - 3) / return_scale, about [-1, 1] at 2."""
    target_return_scale: float = 1.0
    """Target return at evaluation, as a fraction of all-5 ratings; PBT mutates it."""
    num_recommendations: int = 10
    """N items generated per evaluation user."""
    popularity_correction: float = 1.0
    """beta: rank by logits - beta * log(item frequency), i.e. p(item | context) / p(item)^beta.
    Behaviour cloning inherits the exposure bias of the logs; beta 0 recommends the raw argmax."""
    # --- optimization
    lr: float = 1e-3
    """Peak learning rate (AdamW); the schedule multiplies it."""
    lr_schedule: dict = dataclasses.field(
        default_factory=lambda: {"kind": "cosine", "start": 1.0, "end": 0.1, "warmup": 0.05}
    )
    """Learning-rate multiplier over training progress (see trainables/schedules.py)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    batch_size: int = 64
    """Windows per optimizer step."""
    steps_per_iteration: int = 100
    """Optimizer steps per Tune iteration."""
    iterations: int = 20
    """Iterations until the trial is done; schedules run over this horizon."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many iterations."""
    # --- runtime
    seed: int = 0
    """Seeds weights, dropout and batch order."""
    device: str = "auto"
    """auto (the trial's GPU if Ray gave it one), cpu or cuda."""
    torch_threads: int = 0
    """Intra-op threads; 0 = the CPUs Ray gave the trial."""

    def __post_init__(self):
        if not self.tokens or set(self.tokens) - set("rsa") or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"tokens must be a non-empty subset of 'rsa' (e.g. rsa, ra, a), got {self.tokens!r}")
        object.__setattr__(self, "tokens", "".join(t for t in "rsa" if t in self.tokens))
        if self.state not in ("running", "constant"):
            raise ValueError(f"state must be running or constant, got {self.state!r}")
        if self.data_format not in ("auto", "tsv", "goodreads", "movielens"):
            raise ValueError(f"data_format must be auto, tsv, goodreads or movielens, got {self.data_format!r}")
        check_range(self, "[2, inf)", "context_length")
        positive = "layers heads batch_size steps_per_iteration iterations holdout num_recommendations return_horizon"
        check_range(self, "[1, inf)", positive + " checkpoint_every max_timestep")
        check_range(self, "[8, inf)", "width")
        check_range(self, "[10, inf)", "synthetic_users")
        check_range(self, "[20, inf)", "synthetic_items")
        if self.data == "synthetic" and self.synthetic_items < 2 * (self.context_length + self.holdout):
            raise ValueError(
                f"synthetic_items ({self.synthetic_items}) must be >= 2 x (context_length + holdout)"
                f" = {2 * (self.context_length + self.holdout)}"
            )
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        check_range(self, "[0, 1)", "dropout")
        check_range(self, "(0, 1)", "eval_users")
        check_range(self, "(0, inf)", "lr return_scale target_return_scale grad_clip")
        check_range(self, "[0, inf)", "popularity_correction weight_decay")
        object.__setattr__(self, "lr_schedule", schedules.validate(self.lr_schedule, "lr_schedule"))


# Fields PBT may change in place (reset_config); any other change needs a new actor.
MUTABLE_FIELDS = ("lr", "weight_decay", "dropout", "target_return_scale", "grad_clip", "popularity_correction")
# Fields that fix the architecture: a checkpoint only loads into the same ones.
ARCHITECTURE_FIELDS = ("tokens", "context_length", "layers", "heads", "width", "max_timestep")


def load_ratings(cfg: DTConfig) -> ratings.Ratings:
    """The configured dataset with its variants applied; any problem is a DataError."""
    if cfg.data == "synthetic":
        # History lengths: long enough for a full context plus the held-out tail, at most half the items.
        min_len = max(cfg.context_length + cfg.holdout, min(40, cfg.synthetic_items // 4))
        max_len = max(min_len, min(80, cfg.synthetic_items // 2))
        spec = ratings.SyntheticSpec(
            n_users=cfg.synthetic_users,
            n_items=cfg.synthetic_items,
            seed=cfg.data_seed,
            min_len=min_len,
            max_len=max_len,
        )
        data = ratings.synthetic(spec)
    else:
        data = ratings.load(cfg.data, cfg.data_format)
    if cfg.extreme_ratings:
        data = ratings.extreme(data)
    return ratings.subsample_users(data, cfg.user_fraction, cfg.data_seed)


def parse(config: dict) -> DTConfig:
    """The config, validated: the driver's preflight and the trial's setup both call this (the
    data itself is checked by `load_split`)."""
    return from_dict(DTConfig, config, "dt")


def load_split(cfg: DTConfig) -> tuple[ratings.Ratings, recsys.Split]:
    """The dataset and its user split; any problem with the data is a ConfigError naming it."""
    try:
        data = load_ratings(cfg)
        return data, recsys.split_users(
            data, cfg.eval_users, cfg.holdout, cfg.context_length, cfg.data_seed, cfg.drop_short_users
        )
    except ratings.DataError as err:
        raise ConfigError(str(err)) from None


def check(config: dict) -> DTConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    load_split(cfg)
    return cfg


class Block(nn.Module):
    """Pre-norm causal self-attention + MLP, as in nanoGPT.

    Dropout acts on the residual branches only: dropout inside attention would push
    scaled_dot_product_attention off its fused CPU kernel onto a slower path that also draws
    far more random numbers.
    """

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(width, dim=2)  # (B, T, C) each
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, C/H)
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.mlp(self.ln_2(x)))


class DecisionTransformer(nn.Module):
    def __init__(self, cfg: DTConfig, n_items: int):
        super().__init__()
        self.tokens, self.n_items, self.max_timestep = cfg.tokens, n_items, cfg.max_timestep
        self.item_emb = nn.Embedding(n_items + 1, cfg.width)  # row n_items: "not chosen yet"
        self.return_emb = nn.Linear(1, cfg.width)
        self.state_emb = nn.Linear(recsys.STATE_DIM, cfg.width)
        self.time_emb = nn.Embedding(cfg.max_timestep, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        # Where a_t is predicted from: the last non-action token of step t, or a_{t-1} if "a" alone.
        non_action = [i for i, t in enumerate(cfg.tokens) if t != "a"]
        self.query_offset = non_action[-1] if non_action else None

    def set_dropout(self, p: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def forward(self, returns, states, actions, timesteps) -> tuple[torch.Tensor, int]:
        """returns (B, K), states (B, K, 3), actions (B, K), timesteps (B, K) ->
        (hidden states that predict a_first .. a_{K-1}: (B, K - first, C), first)."""
        batch, steps = actions.shape
        time_emb = self.time_emb(timesteps.clamp(max=self.max_timestep - 1))  # (B, K, C)
        parts = {
            "r": self.return_emb(returns.unsqueeze(-1)),
            "s": self.state_emb(states),
            "a": self.item_emb(actions),
        }
        per_step = torch.stack([parts[t] + time_emb for t in self.tokens], dim=2)  # (B, K, P, C)
        width = per_step.shape[-1]
        x = self.drop(per_step.reshape(batch, steps * len(self.tokens), width))  # (B, K*P, C)
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_f(x)  # (B, K*P, C)
        hidden = hidden.reshape(batch, steps, len(self.tokens), width)
        if self.query_offset is None:
            return hidden[:, :-1, 0], 1  # a_t from a_{t-1}: (B, K-1, C)
        return hidden[:, :, self.query_offset], 0  # (B, K, C)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_emb.weight[: self.n_items].T  # (..., I), tied to the item embedding


class DecisionTransformerTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        cpus, gpus = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        self.device = runtime.choose_device(cfg.device, gpus)
        self.rng = runtime.seed_everything(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch order, CPU so it is portable
        self.step_count = 0

        data, split = load_split(cfg)
        self.n_items, self.split, self.expected = data.n_items, split, data.expected
        dev = self.device
        train = split.train
        states = recsys.running_state(train.ratings, train.lengths, cfg.max_timestep)
        # (S, L) tensors on the device; batches are gathered from them by index.
        self.train_items = torch.as_tensor(np.where(train.items >= 0, train.items, self.n_items), device=dev)
        self.train_returns = torch.as_tensor(
            self._scale_returns(recsys.horizon_returns(train.ratings, train.lengths, cfg.return_horizon)), device=dev
        )
        self.train_states = self._state_tensor(states[:, :-1])  # (S, L, 3)
        self.windows = torch.as_tensor(recsys.windows(train.lengths, cfg.context_length), device=dev)
        counts = np.bincount(train.items[train.items >= 0], minlength=self.n_items)
        self.log_popularity = torch.as_tensor(np.log1p(counts), dtype=torch.float32, device=dev)  # (I,)

        self.model = DecisionTransformer(cfg, self.n_items).to(dev)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.baselines = self._baselines()

    # ------------------------------------------------------------------ training

    def progress(self) -> float:
        """Fraction of training done: what lr_schedule is evaluated on."""
        return self.step_count / (self.cfg.iterations * self.cfg.steps_per_iteration)

    def step(self) -> dict:
        cfg = self.cfg
        self.model.train()
        offsets = torch.arange(cfg.context_length, device=self.device)
        losses, norms = [], []
        start = time.perf_counter()
        for _ in range(cfg.steps_per_iteration):
            lr = cfg.lr * schedules.value(cfg.lr_schedule, self.progress())
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            pick = torch.randint(len(self.windows), (cfg.batch_size,), generator=self.generator)
            rows, starts = self.windows[pick.to(self.device)].unbind(1)
            cols = starts[:, None] + offsets  # (B, K)
            rows = rows[:, None]
            actions = self.train_items[rows, cols]  # (B, K)
            hidden, first = self.model(self.train_returns[rows, cols], self.train_states[rows, cols], actions, cols)
            logits = self.model.logits(hidden)  # (B, K - first, I)
            loss = F.cross_entropy(logits.reshape(-1, self.n_items), actions[:, first:].reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
            self.optimizer.step()
            losses.append(loss.detach())
            self.step_count += 1
        elapsed = time.perf_counter() - start
        evaluation = self._evaluate(self.recommend())
        result = {
            m.TRAIN_LOSS: torch.stack(losses).mean().item(),
            m.TRAIN_GRAD_NORM: torch.stack(norms).mean().item(),
            m.TRAIN_LR: lr,
            m.TRAIN_STEPS: self.step_count,
            m.TRAIN_SEQUENCES: self.step_count * cfg.batch_size,
            m.TRAIN_SEQUENCES_PER_S: cfg.steps_per_iteration * cfg.batch_size / elapsed,
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
            **evaluation,
            m.EVAL_SECONDS: time.perf_counter() - start - elapsed,
            **self.baselines,
        }
        result["done"] = self.iteration + 1 >= cfg.iterations
        return result

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def recommend(self) -> np.ndarray:
        """(U, N) items for every evaluation user, generated one at a time with a target return."""
        cfg, ctx, dev = self.cfg, self.split.context, self.device
        self.model.eval()
        k = cfg.context_length
        users = np.arange(ctx.count)
        last = ctx.lengths[:, None] - (k - 1) + np.arange(k - 1)  # (U, K-1) the last known steps
        returns = recsys.horizon_returns(ctx.ratings, ctx.lengths, cfg.return_horizon)[users[:, None], last]
        states = recsys.running_state(ctx.ratings, ctx.lengths, cfg.max_timestep)
        target = cfg.target_return_scale * cfg.return_horizon * ratings.MAX_RATING
        assumed = min(target / cfg.return_horizon, ratings.MAX_RATING)  # rating a pick is taken to get
        # Rolling (U, K) windows whose last step is the one being chosen.
        items = np.concatenate([ctx.items[users[:, None], last], np.full((ctx.count, 1), self.n_items)], 1)
        rets = np.concatenate([returns, np.full((ctx.count, 1), target, dtype=np.float32)], 1)
        sts = np.concatenate([states[users[:, None], last], states[users, ctx.lengths][:, None]], 1)
        steps = np.concatenate([last, ctx.lengths[:, None]], 1)
        count, rating_sum = ctx.lengths.astype(np.float64), ctx.ratings.sum(1).astype(np.float64)

        exclude = torch.as_tensor(recsys.exclusion_mask(ctx, self.split.train, self.n_items), device=dev)
        picks = []
        for _ in range(cfg.num_recommendations):
            hidden, _ = self.model(
                torch.as_tensor(self._scale_returns(rets), device=dev),
                self._state_tensor(sts),
                torch.as_tensor(items, device=dev),
                torch.as_tensor(steps, device=dev),
            )
            logits = self.model.logits(hidden[:, -1]) - cfg.popularity_correction * self.log_popularity  # (U, I)
            logits = logits.masked_fill(exclude, float("-inf"))
            pick = logits.argmax(1)
            exclude[torch.arange(ctx.count, device=dev), pick] = True
            pick = pick.cpu().numpy()
            picks.append(pick)
            # Append the pick with the assumed rating and open the next step.
            items[:, -1] = pick
            count, rating_sum = count + 1, rating_sum + assumed
            next_state = np.stack(
                [
                    (rating_sum / count - 3.0) / 2.0,
                    np.full(ctx.count, (assumed - 3.0) / 2.0),
                    np.log1p(count) / np.log1p(cfg.max_timestep),
                ],
                1,
            ).astype(np.float32)
            items = np.concatenate([items[:, 1:], np.full((ctx.count, 1), self.n_items)], 1)
            rets = np.concatenate([rets[:, 1:], np.full((ctx.count, 1), target, dtype=np.float32)], 1)
            sts = np.concatenate([sts[:, 1:], next_state[:, None]], 1)
            steps = np.concatenate([steps[:, 1:], steps[:, -1:] + 1], 1)
        return np.stack(picks, 1)

    def _evaluate(self, recs: np.ndarray) -> dict:
        """Score `recs` (U, N): true ratings on synthetic data, ranking metrics on real data."""
        split = self.split
        if self.expected is not None:
            value = recsys.true_rating(self.expected, split.context.users, recs)
            oracle = self.baselines[m.EVAL_ORACLE_RATING]
            popular = self.baselines[m.baseline_metric(m.BASELINE_POPULARITY, m.EVAL_TRUE_RATING)]
            score = (value - popular) / max(oracle - popular, 1e-9)  # popularity 0, oracle 1
            return {m.EVAL_TRUE_RATING: value, m.SCORE: score}
        ranking = recsys.ranking_metrics(recs, split.heldout_items, split.heldout_ratings)
        return {
            m.EVAL_HIT_RATE: ranking["hr"],
            m.EVAL_NDCG: ranking["ndcg"],
            m.EVAL_RATED_SHARE: ranking["rated_share"],
            m.EVAL_RATED_MEAN: ranking["rated_mean"],
            m.SCORE: ranking["ndcg"],
        }

    def _baselines(self) -> dict:
        split, n = self.split, self.cfg.num_recommendations
        exclude = recsys.exclusion_mask(split.context, split.train, self.n_items)
        recs = {
            m.BASELINE_POPULARITY: recsys.popularity_recs(split.train, exclude, n),
            m.BASELINE_RANDOM: recsys.random_recs(exclude, n, np.random.default_rng(self.cfg.data_seed)),
        }
        out = {}
        if self.expected is not None:
            users = split.context.users
            oracle = recsys.top_n(self.expected[users], exclude, n)
            out[m.EVAL_ORACLE_RATING] = recsys.true_rating(self.expected, users, oracle)
            for name, r in recs.items():
                out[m.baseline_metric(name, m.EVAL_TRUE_RATING)] = recsys.true_rating(self.expected, users, r)
        self.baselines = out
        for name, r in recs.items():
            for key, val in self._evaluate(r).items():
                if key != m.EVAL_ORACLE_RATING:
                    out[m.baseline_metric(name, key)] = val
        return out

    def _scale_returns(self, returns: np.ndarray) -> np.ndarray:
        """Centred per-step return: 0 for an average rating of 3, +1 for all 5s (at return_scale 2)."""
        mid = (ratings.MAX_RATING + ratings.MIN_RATING) / 2
        return ((returns / self.cfg.return_horizon - mid) / self.cfg.return_scale).astype(np.float32)

    def _state_tensor(self, states: np.ndarray) -> torch.Tensor:
        if self.cfg.state == "constant":
            states = np.zeros_like(states)
        return torch.as_tensor(states, device=self.device)

    # ------------------------------------------------------------------ checkpoints and PBT

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

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device, weights_only=False)
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = state["step_count"]
        runtime.restore_rng_state(state["rng"], self.rng, self.generator)
        self._apply_mutable(self.cfg)  # a PBT clone keeps its own (mutated) hyperparameters

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, parse, MUTABLE_FIELDS, self._apply_mutable)

    def _apply_mutable(self, cfg: DTConfig) -> None:
        for group in self.optimizer.param_groups:
            group["weight_decay"] = cfg.weight_decay
        self.model.set_dropout(cfg.dropout)


def flops_per_sequence(cfg: DTConfig, n_items: int) -> float:
    """Matmul FLOPs of one training window, forward + backward (= 3 x forward), for the benchmark."""
    tokens = cfg.context_length * len(cfg.tokens)
    blocks = cfg.layers * tokens * 2 * 12 * cfg.width**2  # QKV + out projections (4C^2), MLP (8C^2)
    attention = cfg.layers * 2 * 2 * tokens**2 * cfg.width  # scores and weighted sum
    output = 2 * cfg.context_length * cfg.width * n_items  # tied softmax over all items
    return 3.0 * (blocks + attention + output)
