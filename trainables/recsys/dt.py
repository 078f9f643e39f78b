"""Decision Transformer recommender trained offline on rating histories.

Each step t of a user's history is up to three tokens: return-to-go R_t (what the rest of the
history is worth), state s_t (what is known of the user before step t: running rating features plus,
with `user_pool`, a learned summary of the whole history before t) and action a_t (the item). A
causal transformer reads the last K steps interleaved, (R_0, s_0, a_0, R_1, ...), left-padded when
a history is shorter, and predicts a_t from the last token of step t before a_t; the item embedding
doubles as the output softmax. A rating head reads the last token of step t - 1 (which has not seen
R_t) and predicts the rating of any item at step t.

Evaluation (trainables/recsys/protocol.py) scores every item for the next step at once, conditioned on a
target return: logits - popularity_correction x log(1 + count) + rating_score x predicted rating.
`tokens` ablates the sequence: "a" alone, without the rating head, is SASRec (search_spaces/dt.py).
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
from trainables import runtime, schedules
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.recsys import baselines, protocol, ratings


@dataclasses.dataclass(frozen=True)
class DTConfig(protocol.DataConfig):
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
    user_pool: bool = True
    """The state token also carries a learned summary of the user's whole history before the step
    (a rating-weighted sum of item embeddings / sqrt(length)): the transformer itself sees K steps."""
    rating_loss: float = 1.0
    """Weight of the rating head's squared error in the loss (0: the plain DT objective)."""
    rating_score: float = 1.0
    """Ranking adds this x the predicted centred rating (about [-1, 1]) of each item; PBT mutates it."""
    popularity_correction: float = 1.0
    """beta: rank by logits - beta * log(item frequency), i.e. p(item | context) / p(item)^beta.
    Behaviour cloning inherits the exposure bias of the logs; beta 0 recommends the raw argmax."""
    # --- optimization
    lr: float = 3e-3
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
        super().__post_init__()
        if not self.tokens or set(self.tokens) - set("rsa") or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"tokens must be a non-empty subset of 'rsa' (e.g. rsa, ra, a), got {self.tokens!r}")
        object.__setattr__(self, "tokens", "".join(t for t in "rsa" if t in self.tokens))
        if self.state not in ("running", "constant"):
            raise ValueError(f"state must be running or constant, got {self.state!r}")
        check_range(self, "[2, inf)", "context_length")
        positive = "layers heads batch_size steps_per_iteration iterations return_horizon checkpoint_every max_timestep"
        check_range(self, "[1, inf)", positive)
        check_range(self, "[8, inf)", "width")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        check_range(self, "[0, 1)", "dropout")
        check_range(self, "(0, inf)", "lr return_scale target_return_scale grad_clip")
        check_range(self, "[0, inf)", "popularity_correction weight_decay rating_loss rating_score")
        object.__setattr__(self, "lr_schedule", schedules.validate(self.lr_schedule, "lr_schedule"))


IGNORE = -100  # the target of a padding step: no loss

# Fields PBT may change in place (reset_config); any other change needs a new actor.
MUTABLE_FIELDS = (
    "lr",
    "weight_decay",
    "dropout",
    "target_return_scale",
    "grad_clip",
    "popularity_correction",
    "rating_loss",
    "rating_score",
)
# Fields that fix the architecture: a checkpoint only loads into the same ones.
ARCHITECTURE_FIELDS = ("tokens", "context_length", "layers", "heads", "width", "max_timestep", "user_pool")


def parse(config: dict) -> DTConfig:
    """The config, validated: the driver's preflight and the trial's setup both call this (the
    data itself is checked by `protocol.load_split`)."""
    return from_dict(DTConfig, config, "dt")


def check(config: dict) -> DTConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    protocol.load_split(cfg)
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
        # Row n_items: "not chosen yet" (the action being predicted); row n_items + 1: left padding.
        self.item_emb = nn.Embedding(n_items + 2, cfg.width)
        self.return_emb = nn.Linear(1, cfg.width)
        self.state_emb = nn.Linear(protocol.STATE_DIM, cfg.width)
        self.time_emb = nn.Embedding(cfg.max_timestep, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        # Rating head: the rating of item j at step t is (W h) . rating_emb_j + rating_bias_j, read
        # from the last token of step t - 1, which has not seen R_t (with horizon 1, R_t is the rating).
        self.rating_proj = nn.Linear(cfg.width, cfg.width)
        self.rating_emb = nn.Embedding(n_items, cfg.width)
        self.rating_bias = nn.Parameter(torch.zeros(n_items))
        # History pool: item i rated r adds pool_emb_i + (r - 3) / 2 x pool_rated_i to a running sum
        # over the user's whole history; padding adds nothing.
        self.pool_emb = nn.Embedding(n_items + 2, cfg.width, padding_idx=n_items + 1)
        self.pool_rated = nn.Embedding(n_items + 2, cfg.width, padding_idx=n_items + 1)
        for table in (self.item_emb, self.rating_emb, self.pool_emb, self.pool_rated):
            nn.init.normal_(table.weight, std=0.02)
        with torch.no_grad():
            self.pool_emb.weight[n_items + 1].zero_()
            self.pool_rated.weight[n_items + 1].zero_()
        # Where a_t is predicted from: the last non-action token of step t, or a_{t-1} if "a" alone.
        non_action = [i for i, t in enumerate(cfg.tokens) if t != "a"]
        self.query_offset = non_action[-1] if non_action else None

    def set_dropout(self, p: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def history(self, items: torch.Tensor, centred: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor):
        """The pooled history before each of `cols`: items (B, W) whole left-padded histories,
        centred (B, W) their (r - 3) / 2, cols (B, K) columns, counts (B, K) real steps before each
        -> (B, K, C), the sum over earlier columns / sqrt(count)."""
        g = self.pool_emb(items) + centred.unsqueeze(-1) * self.pool_rated(items)  # (B, W, C)
        before = torch.cumsum(g, dim=1) - g  # exclusive prefix sums
        picked = before.gather(1, cols.unsqueeze(-1).expand(-1, -1, g.shape[-1]))  # (B, K, C)
        return picked / counts.clamp(min=1).sqrt().unsqueeze(-1)

    def forward(self, returns, states, actions, timesteps, pooled=None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """returns (B, K), states (B, K, 3), actions (B, K), timesteps (B, K), pooled (B, K, C) or None ->
        (hidden states that predict a_first .. a_{K-1}: (B, K - first, C), first,
        hidden states that predict the ratings of steps 1 .. K-1: (B, K - 1, C))."""
        batch, steps = actions.shape
        time_emb = self.time_emb(timesteps.clamp(max=self.max_timestep - 1))  # (B, K, C)
        parts = {
            "r": self.return_emb(returns.unsqueeze(-1)),
            "s": self.state_emb(states) if pooled is None else self.state_emb(states) + pooled,
            "a": self.item_emb(actions),
        }
        per_step = torch.stack([parts[t] + time_emb for t in self.tokens], dim=2)  # (B, K, P, C)
        width = per_step.shape[-1]
        x = self.drop(per_step.reshape(batch, steps * len(self.tokens), width))  # (B, K*P, C)
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_f(x)  # (B, K*P, C)
        hidden = hidden.reshape(batch, steps, len(self.tokens), width)
        rating_hidden = hidden[:, :-1, -1]  # the last token of steps 0 .. K-2: (B, K-1, C)
        if self.query_offset is None:
            return hidden[:, :-1, 0], 1, rating_hidden  # a_t from a_{t-1}: (B, K-1, C)
        return hidden[:, :, self.query_offset], 0, rating_hidden  # (B, K, C)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_emb.weight[: self.n_items].T  # (..., I), tied to the item embedding

    def ratings(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted centred rating ((r - 3) / 2) of `items` (same shape as hidden[..., 0]), or of
        every item: (..., I)."""
        query = self.rating_proj(hidden)  # (..., C)
        if items is None:
            return query @ self.rating_emb.weight.T + self.rating_bias
        return (query * self.rating_emb(items)).sum(-1) + self.rating_bias[items]


class DecisionTransformerTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        cpus, gpus = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        self.device = runtime.choose_device(cfg.device, gpus)
        self.rng = runtime.seed_everything(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch order, CPU so it is portable
        self.step_count = 0

        _, split = protocol.load_split(cfg)
        self.split, self.n_items = split, split.n_items
        self.score_metric = protocol.score_metric(split)
        train, dev = split.train, self.device
        # Flat (N,) tensors, one entry per training interaction, in the order of train.flat_items:
        # the window that ends at step e of row s is steps e - K + 1 .. e of it, left-padded where
        # they fall before 0 (`_window`), so short histories and the first steps of long ones train
        # too, and memory grows with the interactions, not with rows x the longest history.
        self.pad_item = self.n_items + 1  # the embedding row of left padding
        returns, states = self._features(train)
        self.train_offsets = torch.as_tensor(train.offsets, device=dev)
        self.train_lengths = torch.as_tensor(train.lengths, device=dev)
        self.train_items = torch.as_tensor(train.flat_items, device=dev)
        self.train_returns = torch.as_tensor(returns, device=dev)
        # The rating head's target, about [-1, 1]
        self.train_centred = torch.as_tensor((train.flat_ratings - 3.0) / 2.0, device=dev)
        self.pooling = cfg.user_pool and "s" in cfg.tokens
        self.train_states = self._state_tensor(states)
        # (W, 2) every (row, last step) with at least one step before it to learn from.
        per_row = np.maximum(train.lengths - 1, 0)
        rows = np.repeat(np.arange(train.count), per_row)
        ends = protocol.ranges(np.ones(train.count, np.int64), per_row)  # 1 .. n - 1 for each row
        if not len(rows):
            raise ConfigError(f"{split.source}: no training history has 2+ interactions; the DT has nothing to learn")
        self.windows = torch.as_tensor(np.stack([rows, ends], 1), device=dev)
        counts = np.bincount(train.flat_items, minlength=self.n_items)
        self.log_popularity = torch.as_tensor(np.log1p(counts), dtype=torch.float32, device=dev)  # (I,)

        self.model = DecisionTransformer(cfg, self.n_items).to(dev)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.baselines = baselines.reference(split, cfg.data_seed)

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
            rows, ends = self.windows[pick.to(self.device)].unbind(1)
            steps = ends[:, None] - (cfg.context_length - 1) + offsets  # (B, K) step index, < 0: left padding
            pooled = None
            if self.pooling:
                # Whole histories, left-padded by K - 1 like the window's columns (col = step + K - 1).
                width = int(self.train_lengths[rows].max()) + cfg.context_length - 1
                whole = torch.arange(width, device=self.device)[None, :] - (cfg.context_length - 1)
                pooled = self.model.history(
                    self._window(self.train_items, rows, whole, self.pad_item),
                    self._window(self.train_centred, rows, whole, 0.0),
                    steps + cfg.context_length - 1,
                    steps.clamp(min=0),
                )
            hidden, first, rating_hidden = self.model(
                self._window(self.train_returns, rows, steps, 0.0),
                self._window(self.train_states, rows, steps, 0.0),
                self._window(self.train_items, rows, steps, self.pad_item),
                steps.clamp(min=0),
                pooled,
            )
            logits = self.model.logits(hidden)  # (B, K - first, I)
            targets = self._window(self.train_items, rows, steps, IGNORE)  # (B, K), IGNORE on padding
            loss = F.cross_entropy(
                logits.reshape(-1, self.n_items), targets[:, first:].reshape(-1), ignore_index=IGNORE
            )
            if cfg.rating_loss > 0:
                later = targets[:, 1:]  # (B, K - 1) the items of steps 1 .. K-1
                known = later != IGNORE
                predicted = self.model.ratings(rating_hidden, later.clamp(min=0))
                error = (predicted - self._window(self.train_centred, rows, steps, 0.0)[:, 1:]) ** 2
                loss = loss + cfg.rating_loss * (error * known).sum() / known.sum().clamp(min=1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
            self.optimizer.step()
            losses.append(loss.detach())
            self.step_count += 1
        elapsed = time.perf_counter() - start
        evaluation = protocol.evaluate(self.scores, self.split.valid, self.split.vocabulary, m.VALID)
        result = {
            m.TRAIN_LOSS: torch.stack(losses).mean().item(),
            m.TRAIN_GRAD_NORM: torch.stack(norms).mean().item(),
            m.TRAIN_LR: lr,
            m.TRAIN_STEPS: self.step_count,
            m.TRAIN_SEQUENCES: self.step_count * cfg.batch_size,
            m.TRAIN_SEQUENCES_PER_S: cfg.steps_per_iteration * cfg.batch_size / elapsed,
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
            **evaluation,
            m.SCORE: evaluation[self.score_metric],
            m.EVAL_SECONDS: time.perf_counter() - start - elapsed,
            **self.baselines,
        }
        result["done"] = self.iteration + 1 >= cfg.iterations
        return result

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def scores(self, context: protocol.Sequences) -> np.ndarray:
        """(U, I) next-item scores for users with `context` histories, conditioned on the target
        return: logits - popularity_correction x log(1 + training count)."""
        cfg, dev, k = self.cfg, self.device, self.cfg.context_length
        self.model.eval()
        users, n = np.arange(context.count)[:, None], context.lengths
        cols = n[:, None] + np.arange(k)  # padded columns of steps n - K + 1 .. n (n: the step chosen now)
        items = np.where(context.items >= 0, context.items, self.pad_item)
        items = _left_pad(items, k - 1, self.pad_item, extra=1)
        items[np.arange(context.count), n + k - 1] = self.n_items  # "not chosen yet"
        target = cfg.target_return_scale * cfg.return_horizon * ratings.MAX_RATING
        returns = protocol.horizon_returns(context.ratings, n, cfg.return_horizon)
        returns = _left_pad(self._scale_returns(returns), k - 1, 0.0, extra=1)
        returns[np.arange(context.count), n + k - 1] = self._scale_returns(np.float32(target))
        states = _left_pad(protocol.running_state(context.ratings, n, cfg.max_timestep), k - 1, 0.0)
        steps = torch.as_tensor(np.maximum(cols - (k - 1), 0), device=dev)
        pooled = None
        if self.pooling:
            centred = _left_pad((context.ratings - 3.0) / 2.0 * (context.items >= 0), k - 1, 0.0, extra=1)
            whole = torch.as_tensor(items, device=dev)
            pooled = self.model.history(
                whole, torch.as_tensor(centred, device=dev), torch.as_tensor(cols, device=dev), steps
            )
        hidden, _, rating_hidden = self.model(
            torch.as_tensor(returns[users, cols], device=dev),
            self._state_tensor(states[users, cols]),
            torch.as_tensor(items[users, cols], device=dev),
            steps,
            pooled,
        )
        scores = self.model.logits(hidden[:, -1]) - cfg.popularity_correction * self.log_popularity  # (U, I)
        if cfg.rating_score > 0:
            scores = scores + cfg.rating_score * self.model.ratings(rating_hidden[:, -1])
        return scores.float().cpu().numpy()

    def test(self) -> dict:
        """The test figures of the current weights, and of popularity and random on the same users:
        called once, on the selected trial, by the driver."""
        figures = protocol.evaluate(self.scores, self.split.test, self.split.vocabulary, m.TEST, per_user=True)
        return {**figures, **baselines.reference(self.split, self.cfg.data_seed, m.TEST)}

    def _window(self, flat: torch.Tensor, rows: torch.Tensor, steps: torch.Tensor, fill) -> torch.Tensor:
        """(B, T, ...) the entries of training rows `rows` (B,) at `steps` (B, T) from a flat (N, ...)
        tensor; `fill` where a step is outside the row (left padding, or past the end)."""
        inside = (steps >= 0) & (steps < self.train_lengths[rows, None])
        at = self.train_offsets[rows, None] + steps.clamp(min=0)
        values = flat[torch.where(inside, at, 0)]
        mask = inside.view(*inside.shape, *([1] * (values.dim() - inside.dim())))
        return torch.where(mask, values, torch.as_tensor(fill, dtype=values.dtype, device=values.device))

    def _features(self, train: protocol.Sequences, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Flat (N,) scaled returns-to-go and (N, STATE_DIM) states of every training step, computed
        `chunk` rows at a time on the padded form (row by row, so the values are the same)."""
        cfg = self.cfg
        returns = np.empty(len(train.flat_items), dtype=np.float32)
        states = np.empty((len(train.flat_items), protocol.STATE_DIM), dtype=np.float32)
        for lo in range(0, train.count, chunk):
            part = train.rows(np.arange(lo, min(lo + chunk, train.count)))
            valid = np.arange(part.items.shape[1])[None, :] < part.lengths[:, None]
            at = slice(train.offsets[lo], train.offsets[lo + part.count])
            r = protocol.horizon_returns(part.ratings, part.lengths, cfg.return_horizon)
            returns[at] = self._scale_returns(r)[valid]
            states[at] = protocol.running_state(part.ratings, part.lengths, cfg.max_timestep)[:, :-1][valid]
        return returns, states

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


def _left_pad(x: np.ndarray, width: int, fill, extra: int = 0) -> np.ndarray:
    """`x` (S, L, ...) with `width` columns of `fill` in front and `extra` behind."""
    pad = [(0, 0), (width, extra)] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, pad, constant_values=fill)


def flops_per_sequence(cfg: DTConfig, n_items: int) -> float:
    """Matmul FLOPs of one training window, forward + backward (= 3 x forward), for the benchmark."""
    tokens = cfg.context_length * len(cfg.tokens)
    blocks = cfg.layers * tokens * 2 * 12 * cfg.width**2  # QKV + out projections (4C^2), MLP (8C^2)
    attention = cfg.layers * 2 * 2 * tokens**2 * cfg.width  # scores and weighted sum
    output = 2 * cfg.context_length * cfg.width * n_items  # tied softmax over all items
    return 3.0 * (blocks + attention + output)
