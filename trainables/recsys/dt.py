"""Decision Transformer recommender: SASRec whose inputs also carry the return-to-go and the state.

The history is read in slots. Slot j predicts the item of step u and is one token, the sum of the
embeddings of a_{u-1} (the item of step u - 1, scaled by sqrt(width) as in SASRec), R_u (the
return-to-go from step u: with return_horizon 1, the rating the user gives the item of step u),
s_u (what is known of the user before step u: mean and last rating, log position) and the slot's
position 0 .. K - 1 within the window. With `tokens="a"` that is SASRec exactly: the same encoder
(trainables/recsys/transformer.py), created first from the same seed, the same windows, loss, early
stopping and scores (trainables/recsys/sasrec.py), which tests/test_dt.py checks bit for bit.

Why one token per slot and not three interleaved tokens (R_u, s_u, a_{u-1}) as in the Decision
Transformer paper: measured on MovieLens-100K (docs/recommenders.md), interleaving tripled the
sequence and the epoch time, and trained far slower (validation NDCG@10 0.084 after 20 epochs
against SASRec's 0.114): the token that predicts a_u no longer held the last item in its own
residual stream, only behind a dropped-out attention hop.

At evaluation the last slot asks for `target_return_scale` x the best return; the ranking is the
logits - popularity_correction x log(1 + count).
"""

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainables.config import check_range, from_dict
from trainables.recsys import protocol, ratings, sasrec
from trainables.recsys.transformer import Encoder, EncoderShape

MAX_POSITION = 1000  # the state's log-position feature reaches 1 at this step


@dataclasses.dataclass(frozen=True)
class DTConfig(sasrec.SASRecConfig):
    """SASRec's settings (architecture, dropout, epochs, early stopping) plus the DT's tokens."""

    tokens: str = "ra"
    """What each slot's token carries: "a" (the item) plus any of r (return-to-go) and s (state);
    "a" alone is SASRec."""
    state: str = "running"
    """running (mean and last rating, log position) or constant (the research's constant state)."""
    return_horizon: int = 1
    """Ratings ahead in a return-to-go (1: the rating of the item to predict)."""
    return_scale: float = 2.0
    """Return-to-go scaling: the token sees (R / horizon - 3) / return_scale, about [-1, 1] at 2."""
    target_return_scale: float = 0.8
    """Target return at evaluation, as a fraction of all-5 ratings (0.8: ask for a 4-star item); PBT
    mutates it. Defaults chosen on validation NDCG@10 on MovieLens-100K (docs/recommenders.md)."""

    def __post_init__(self):
        super().__post_init__()
        if "a" not in self.tokens or set(self.tokens) - set("rsa") or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"tokens must be 'a' plus any of 'r' and 's' (a, ra, sa, rsa), got {self.tokens!r}")
        object.__setattr__(self, "tokens", "".join(t for t in "ars" if t in self.tokens))
        if self.state not in ("running", "constant"):
            raise ValueError(f"state must be running or constant, got {self.state!r}")
        check_range(self, "[1, inf)", "return_horizon")
        check_range(self, "(0, inf)", "return_scale target_return_scale")


# Fields PBT may change in place (reset_config); any other change needs a new actor.
MUTABLE_FIELDS = sasrec.MUTABLE_FIELDS + ("target_return_scale",)
# Fields that fix the architecture: a checkpoint only loads into the same ones.
ARCHITECTURE_FIELDS = sasrec.ARCHITECTURE_FIELDS + ("tokens",)


def parse(config: dict) -> DTConfig:
    """The config, validated: the driver's preflight and the trial's setup both call this."""
    return from_dict(DTConfig, config, "dt")


def check(config: dict) -> DTConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    protocol.load_split(cfg)
    return cfg


class DecisionTransformer(nn.Module):
    def __init__(self, shape: EncoderShape, tokens: str, dropout: float, attention_dropout: float):
        super().__init__()
        # First, so that with tokens="a" the weights are SASRec's for the same seed.
        self.encoder = Encoder(shape, dropout, attention_dropout)
        self.tokens, self.padding = tokens, shape.n_items
        if "r" in tokens:
            self.return_emb = nn.Linear(1, shape.width)
        if "s" in tokens:
            self.state_emb = nn.Linear(protocol.STATE_DIM, shape.width)

    def set_dropout(self, dropout: float, attention_dropout: float) -> None:
        self.encoder.set_dropout(dropout, attention_dropout)

    def forward(self, actions: torch.Tensor, returns: torch.Tensor, states: torch.Tensor, real: torch.Tensor):
        """actions (B, T) a_{u-1} of each slot (padding = n_items), returns (B, T) scaled R_u,
        states (B, T, STATE_DIM) s_u, real (B, T) False on padding slots -> (B, T, C) the hidden
        states that predict the item of step u."""
        x = self.encoder.embed_items(actions)  # (B, T, C), positions included
        if self.tokens == "a":
            return self.encoder.encode(x, actions != self.padding)  # SASRec
        if "r" in self.tokens:
            x = x + self.return_emb(returns.unsqueeze(-1))
        if "s" in self.tokens:
            x = x + self.state_emb(states)
        return self.encoder.encode(x, real)  # a slot with no item yet (an empty history) still conditions

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.encoder.logits(hidden)  # (..., I), the item table itself


class DecisionTransformerTrainable(sasrec.SASRecTrainable):
    MUTABLE = MUTABLE_FIELDS
    ARCHITECTURE = ARCHITECTURE_FIELDS
    parse = staticmethod(parse)

    def setup(self, config: dict):
        super().setup(config)
        train = self.split.train
        # Flat (N,) and (N, STATE_DIM) features of every training step, in flat_items' order.
        returns, states = self._features(train)
        self.train_returns = torch.as_tensor(returns, device=self.device)
        self.train_states = torch.as_tensor(states, device=self.device)

    def build_model(self) -> DecisionTransformer:
        cfg = self.cfg
        shape = EncoderShape(self.n_items, cfg.context_length, cfg.layers, cfg.heads, cfg.width)
        return DecisionTransformer(shape, cfg.tokens, cfg.dropout, cfg.attention_dropout)

    def batch_loss(self, at: torch.Tensor, real: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Slot j of a window reads a_{u-1} at flat index at[:, j] and R_u, s_u at at[:, j] + 1 (the
        step whose item it predicts): cross-entropy over every item."""
        actions = torch.where(real, self.train_items[at], self.n_items)  # (B, T)
        hidden = self.model(actions, self.train_returns[at + 1], self.train_states[at + 1], real)  # (B, T, C)
        targets = self.train_items[at + 1][known]  # (N,)
        return F.cross_entropy(self.model.logits(hidden[known]), targets), len(targets)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def scores(self, context: protocol.Sequences) -> np.ndarray:
        """(U, I) next-item scores after each context of n items, asking for the target return: the
        last min(n, K) items fill the slots (one padding slot when n = 0), the last slot carries
        the target return and the state after step n - 1."""
        cfg, dev = self.cfg, self.device
        self.model.eval()
        n = context.lengths  # (U,)
        take = np.clip(n, 1, cfg.context_length)  # slots per user
        slots = np.arange(int(take.max()))  # (T,)
        step = n[:, None] - take[:, None] + 1 + slots  # (U, T) the step whose item each slot predicts
        real = slots < take[:, None]
        users = np.arange(context.count)[:, None]
        items, values = context.items, context.ratings  # (U, L) padded with -1 and 0
        width = values.shape[1]
        previous = np.clip(step - 1, 0, max(width - 1, 0))  # the step of each slot's action
        actions = items[users, previous] if width else np.full(step.shape, -1)
        actions = np.where(real & (step >= 1) & (actions >= 0), actions, self.n_items)
        target = self._scale_returns(np.float32(cfg.target_return_scale * cfg.return_horizon * ratings.MAX_RATING))
        returns = self._scale_returns(protocol.horizon_returns(values, n, cfg.return_horizon))  # (U, L)
        known = returns[users, np.clip(step, 0, max(width - 1, 0))] if width else target
        slot_returns = np.where(step < n[:, None], known, target)
        states = self._state(protocol.running_state(values, n, MAX_POSITION))  # (U, L + 1, STATE_DIM)
        slot_states = states[users, np.clip(step, 0, width)]
        hidden = self.model(
            torch.as_tensor(actions, device=dev),
            torch.as_tensor(slot_returns, dtype=torch.float32, device=dev),
            torch.as_tensor(slot_states, device=dev),
            torch.as_tensor(real, device=dev),
        )
        last = torch.as_tensor(take - 1, device=dev)
        rows = torch.arange(context.count, device=dev)
        scores = self.model.logits(hidden[rows, last]) - cfg.popularity_correction * self.log_popularity  # (U, I)
        return scores.float().cpu().numpy()

    # ------------------------------------------------------------------ features

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
            states[at] = self._state(protocol.running_state(part.ratings, part.lengths, MAX_POSITION))[:, :-1][valid]
        return returns, states

    def _scale_returns(self, returns: np.ndarray) -> np.ndarray:
        """Centred per-step return: 0 for an average rating of 3, +1 for all 5s (at return_scale 2)."""
        mid = (ratings.MAX_RATING + ratings.MIN_RATING) / 2
        return ((returns / self.cfg.return_horizon - mid) / self.cfg.return_scale).astype(np.float32)

    def _state(self, states: np.ndarray) -> np.ndarray:
        return np.zeros_like(states) if self.cfg.state == "constant" else states
