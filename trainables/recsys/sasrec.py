"""SASRec (Kang & McAuley 2018) trained as its replications train it: full-softmax cross-entropy
over every item (Klenitskiy & Vasilev 2023), epochs over the training data, early stopping on
validation NDCG@10.

An epoch predicts every next item of every training history exactly once. A history longer than the
context is cut into windows of `context_length` inputs, from its end backwards at a random offset
(so window boundaries move from epoch to epoch); each target is predicted in the window that ends
closest after it, and the targets a window shares with the one before it are masked.

A Tune iteration is `epochs_per_iteration` epochs followed by one validation measurement. Training
stops after `patience` iterations without a better validation NDCG@10 (or after `iterations`); the
best weights are then restored, so the trial's last result, last checkpoint and test figures are
those of its best epoch. Scores are raw logits; `popularity_correction` (default 0) subtracts
beta x log(1 + training count) for those who want it.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
import ray.tune
import torch
from torch.nn import functional as F

from trainables import metrics as m
from trainables import runtime
from trainables.config import ConfigError, check_range, from_dict, to_dict
from trainables.recsys import baselines, protocol
from trainables.recsys.transformer import Encoder, EncoderShape


@dataclasses.dataclass(frozen=True)
class SASRecConfig(protocol.DataConfig):
    # --- model (the published SASRec setup for MovieLens: 2 blocks, 1 head, width 50-64, dropout 0.2-0.5)
    context_length: int = 50
    """Most recent items the model reads (SASRec: 50 on sparse data, 200 on MovieLens-1M)."""
    layers: int = 2
    """Self-attention blocks."""
    heads: int = 1
    """Attention heads per block."""
    width: int = 64
    """Embedding and hidden width."""
    dropout: float = 0.5
    """Dropout on embeddings and both residual branches."""
    attention_dropout: float = 0.5
    """Dropout on the attention weights."""
    popularity_correction: float = 0.0
    """beta: rank by logits - beta x log(1 + training count); 0 ranks by the raw logits."""
    min_target_rating: float = 0.0
    """Train only on next items rated at least this (the inputs keep every item); 0: every target.
    At 4 the model learns to predict liked items: a SASRec that uses the ratings a DT reads."""
    # --- optimization
    lr: float = 1e-3
    """Adam learning rate (constant, as in SASRec)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (SASRec uses none; dropout regularises)."""
    grad_clip: float = 0.0
    """Max global gradient norm; 0: no clipping."""
    batch_size: int = 64
    """Windows per optimizer step."""
    epochs_per_iteration: int = 5
    """Epochs between validation measurements (one Tune iteration): the reference SASRec validates
    every 5 epochs; validating every epoch cost 7% of an epoch each time on MovieLens-100K."""
    iterations: int = 10
    """Most iterations (of `epochs_per_iteration` epochs): 50 epochs, the reference's budget; raise it
    on larger data (MovieLens-1M setups train 200)."""
    patience: int = 3
    """Iterations without a better validation NDCG@10 before training stops (0: never early): 15
    epochs at the default, the reference's rule. On MovieLens-100K validation NDCG@10 moves by about
    +-0.003 between epochs while it still climbs for 40+ epochs, so a shorter patience stops on noise."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many iterations."""
    # --- runtime
    seed: int = 0
    """Seeds weights, dropout, window offsets and batch order."""
    device: str = "auto"
    """auto (the trial's GPU if Ray gave it one), cpu or cuda."""
    torch_threads: int = 0
    """Intra-op threads; 0 = the CPUs Ray gave the trial."""

    def __post_init__(self):
        super().__post_init__()
        check_range(self, "[2, 1000]", "context_length")
        check_range(self, "[1, inf)", "layers heads batch_size epochs_per_iteration iterations checkpoint_every")
        check_range(self, "[0, inf)", "patience")
        check_range(self, "[8, inf)", "width")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        check_range(self, "[0, 1)", "dropout attention_dropout")
        check_range(self, "(0, inf)", "lr")
        check_range(self, "[0, inf)", "popularity_correction weight_decay grad_clip min_target_rating")


IGNORE = -100  # the target of a padding or already-covered position: no loss
# Fields PBT may change in place (reset_config); any other change needs a new actor.
MUTABLE_FIELDS = ("lr", "weight_decay", "dropout", "attention_dropout", "popularity_correction", "grad_clip")
# Fields that fix the architecture: a checkpoint only loads into the same ones.
ARCHITECTURE_FIELDS = ("context_length", "layers", "heads", "width")


def parse(config: dict) -> SASRecConfig:
    return from_dict(SASRecConfig, config, "sasrec")


def check(config: dict) -> SASRecConfig:
    """Driver-side preflight: the config parses and the data loads and splits. Raises ConfigError."""
    cfg = parse(config)
    protocol.load_split(cfg)
    return cfg


@dataclasses.dataclass(frozen=True)
class Windows:
    """One epoch's training windows over a Sequences' flat arrays: window w reads the flat items
    start[w] .. start[w] + length[w] - 1, and each of them predicts its successor in the history;
    its first skip[w] targets were predicted by the window before it and carry no loss."""

    start: np.ndarray  # (W,) int64
    length: np.ndarray  # (W,) int64, 1 .. context_length
    skip: np.ndarray  # (W,) int64

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows `rows` (B,) right-padded to their longest -> flat index of each input (B, T),
        clipped inside the data on padding; real (B, T) False on padding; known (B, T) True where
        the target (the item at flat index + 1) is trained."""
        length, skip = self.length[rows], self.skip[rows]
        steps = np.arange(int(length.max()))  # (T,)
        real = steps < length[:, None]
        known = real & (steps >= skip[:, None])
        return np.where(real, self.start[rows, None] + steps, self.start[rows, None]), real, known


def epoch_windows(train: protocol.Sequences, context_length: int, rng: np.random.Generator) -> Windows:
    """One epoch's windows: every next item of every history is a target exactly once.

    A window that ends at step e (exclusive) reads items [s, e - 1) with s = max(0, e - 1 - K) and
    predicts items [s + 1, e); ends run backwards from the history's end in strides of K from a
    random offset, so window boundaries move from epoch to epoch. Targets before the previous
    window's end are skipped (already covered).
    """
    starts, lengths, skips = [], [], []
    k = context_length
    for row in range(train.count):
        n = int(train.lengths[row])
        if n < 2:
            continue
        offset = int(rng.integers(0, k)) if n - 1 > k else 0
        covered = 1  # targets start at step 1
        for end in sorted({n, *range(n - offset, 1, -k)}):
            start = max(0, end - 1 - k)
            starts.append(train.offsets[row] + start)
            lengths.append(end - 1 - start)
            skips.append(max(0, covered - start - 1))
            covered = end
    return Windows(*(np.asarray(a, dtype=np.int64) for a in (starts, lengths, skips)))


class SASRecTrainable(ray.tune.Trainable):
    """The training loop, early stopping, evaluation and checkpoints; the Decision Transformer
    (trainables/recsys/dt.py) reuses all of it with its own model, batch loss and scores."""

    MUTABLE = MUTABLE_FIELDS
    ARCHITECTURE = ARCHITECTURE_FIELDS
    parse = staticmethod(parse)

    def setup(self, config: dict):
        cfg = self.cfg = self.parse(config)
        cpus, gpus = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        # Adam's second moments of rarely seen items' rows fall into denormal floats, which the CPU
        # computes on a slow path: the DT's epoch ran 4x slower before they were flushed to zero.
        torch.set_flush_denormal(True)
        self.device = runtime.choose_device(cfg.device, gpus)
        self.rng = runtime.seed_everything(cfg.seed)
        _, self.split = protocol.load_split(cfg)
        if not (self.split.train.lengths >= 2).any():
            raise ConfigError(
                f"{self.split.source}: no training history has 2+ interactions; SASRec has nothing to learn"
            )
        self.n_items = self.split.n_items
        self.score_metric = protocol.score_metric(self.split)
        counts = np.bincount(self.split.train.flat_items, minlength=self.n_items)
        self.log_popularity = torch.as_tensor(np.log1p(counts), dtype=torch.float32, device=self.device)
        self.train_items = torch.as_tensor(self.split.train.flat_items, device=self.device)  # (N,)
        self.model = self.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
        )
        self.epoch = 0
        self.best = {"ndcg": -np.inf, "epoch": 0, "result": None, "weights": None}
        self.stale = 0  # iterations since the best
        self.baselines = baselines.reference(self.split, cfg.data_seed)

    def build_model(self) -> Encoder:
        cfg = self.cfg
        shape = EncoderShape(self.n_items, cfg.context_length, cfg.layers, cfg.heads, cfg.width)
        return Encoder(shape, cfg.dropout, cfg.attention_dropout)

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> tuple[float, int]:
        """One epoch; returns (mean loss per target, targets trained)."""
        cfg = self.cfg
        self.model.train()
        windows = epoch_windows(self.split.train, cfg.context_length, self.rng)
        order = self.rng.permutation(len(windows.start))
        total, count = torch.zeros((), device=self.device), 0
        for lo in range(0, len(order), cfg.batch_size):
            at, real, known = windows.batch(order[lo : lo + cfg.batch_size])
            if cfg.min_target_rating > 0:  # the target of flat index i is the item at i + 1
                known = known & (self.split.train.flat_ratings[at + 1] >= cfg.min_target_rating)
                if not known.any():
                    continue
            at, real, known = (torch.as_tensor(a, device=self.device) for a in (at, real, known))
            loss, n = self.batch_loss(at, real, known)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            total += loss.detach() * n
            count += n
        self.epoch += 1
        return total.item() / max(count, 1), count

    def batch_loss(self, at: torch.Tensor, real: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over every item of the known targets of one batch (see Windows.batch)."""
        x = torch.where(real, self.train_items[at], self.n_items)  # (B, T), padding = n_items
        hidden = self.model(x)  # (B, T, C)
        targets = self.train_items[at + 1][known]  # (N,)
        return F.cross_entropy(self.model.logits(hidden[known]), targets), len(targets)

    def step(self) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        losses, targets = [], 0
        for _ in range(cfg.epochs_per_iteration):
            loss, n = self.train_epoch()
            losses.append(loss)
            targets += n
        elapsed = time.perf_counter() - start
        evaluation = protocol.evaluate(self.scores, self.split.valid, self.split.vocabulary, m.VALID)
        result = {
            m.TRAIN_LOSS: float(np.mean(losses)),
            m.TRAIN_LR: cfg.lr,
            m.TRAIN_EPOCHS: self.epoch,
            m.TRAIN_SEQUENCES_PER_S: targets / elapsed,
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in self.MUTABLE},
            **evaluation,
            m.SCORE: evaluation[self.score_metric],
            m.EVAL_SECONDS: time.perf_counter() - start - elapsed,
            **self.baselines,
        }
        ndcg = evaluation[m.split_metric(m.VALID, m.NDCG)]
        if ndcg > self.best["ndcg"]:
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"ndcg": ndcg, "epoch": self.epoch, "result": dict(result), "weights": weights}
            self.stale = 0
        else:
            self.stale += 1
        stop = (cfg.patience and self.stale >= cfg.patience) or self.iteration + 1 >= cfg.iterations
        if stop and self.best["weights"] is not None:
            # The trial ends on its best epoch: the last result and checkpoint are the selected model.
            self.model.load_state_dict(self.best["weights"])
            result = {**result, **{k: v for k, v in self.best["result"].items() if k.startswith(m.VALID)}}
            result[m.SCORE] = self.best["result"][m.SCORE]
        result[m.BEST_EPOCH] = self.best["epoch"]
        result["done"] = bool(stop)
        return result

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def scores(self, context: protocol.Sequences) -> np.ndarray:
        """(U, I) next-item scores from the last `context_length` items of each context."""
        cfg = self.cfg
        self.model.eval()
        k, n = cfg.context_length, context.lengths
        take = np.clip(n, 1, k)  # (U,) items read per user (an empty context reads one padding token)
        steps = np.arange(int(take.max()))  # (T,)
        at = context.offsets[:-1, None] + (n - np.minimum(n, k))[:, None] + steps  # (U, T) flat indices
        real = steps < np.minimum(n, k)[:, None]
        flat = context.flat_items
        window = np.where(real, flat[np.minimum(at, max(len(flat) - 1, 0))] if len(flat) else 0, self.n_items)
        hidden = self.model(torch.as_tensor(window, device=self.device))  # (U, T, C)
        last = hidden[torch.arange(len(n)), torch.as_tensor(take - 1, device=self.device)]  # (U, C)
        scores = self.model.logits(last) - cfg.popularity_correction * self.log_popularity
        return scores.float().cpu().numpy()

    def test(self) -> dict:
        """Test figures of the current (best) weights, and of popularity and random on the same users:
        called once, on the selected trial, by the driver."""
        figures = protocol.evaluate(self.scores, self.split.test, self.split.vocabulary, m.TEST, per_user=True)
        return {**figures, **baselines.reference(self.split, self.cfg.data_seed, m.TEST)}

    # ------------------------------------------------------------------ checkpoints and PBT

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {
                "config": to_dict(self.cfg),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch,
                "best": self.best,
                "stale": self.stale,
                "rng": runtime.rng_state(self.rng),
            },
            Path(checkpoint_dir) / "state.pt",
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device, weights_only=False)
        runtime.check_checkpoint(state["config"], self.cfg, self.ARCHITECTURE, checkpoint_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.best, self.stale = state["epoch"], state["best"], state["stale"]
        runtime.restore_rng_state(state["rng"], self.rng)
        self._apply_mutable(self.cfg)  # a PBT clone keeps its own (mutated) hyperparameters

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, self.parse, self.MUTABLE, self._apply_mutable)

    def _apply_mutable(self, cfg: SASRecConfig) -> None:
        for group in self.optimizer.param_groups:
            group["lr"], group["weight_decay"] = cfg.lr, cfg.weight_decay
        self.model.set_dropout(cfg.dropout, cfg.attention_dropout)
