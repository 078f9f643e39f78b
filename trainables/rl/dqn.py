"""DQN written for this platform: vectorized environments, replay in preallocated numpy arrays
(uniform or prioritized), a target network (hard or Polyak), double DQN, n-step returns, Huber
loss and gradient clipping, with epsilon and learning rate on the shared schedules.

One Tune iteration collects `steps_per_iteration` env steps (across all envs), doing
`replay_ratio` gradient updates per env step, then evaluates the greedy policy (no exploration,
no training, the env's own reward) on `eval_episodes` episodes: their mean return is the score.
"""

import dataclasses
import math
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
from trainables.rl import common
from trainables.rl.replay import NStep, PrioritizedReplayBuffer, ReplayBuffer


@dataclasses.dataclass(frozen=True)
class DQNConfig(common.RLConfig):
    # --- reward shaping (CartPole only; training reward only, evaluation always uses the env's reward)
    shape_angle: float = 0.0
    """Penalty per step x |pole angle| / angle limit."""
    shape_velocity: float = 0.0
    """Penalty per step x |cart velocity|."""
    shape_position: float = 0.0
    """Penalty per step x |cart position| / position limit."""
    # --- network
    hidden: int = 64
    """Units per hidden layer."""
    layers: int = 2
    """Hidden layers."""
    # --- learning
    n_step: int = 3
    """Steps summed into each return before bootstrapping."""
    double_dqn: bool = True
    """Pick the next action with the online network, value it with the target network."""
    # The defaults of batch_size, replay_ratio, learning_starts, target_tau/target_every, epsilon,
    # epsilon_horizon and lr are the pick of an Optuna study of seconds to solve CartPole-v1
    # (bench/cartpole_search.py: 55 trials x 3 search seeds, the best 3 confirmed on 5 more seeds,
    # values rounded): median 4.1 s over its 8 search seeds, against ~10 s for the earlier defaults.
    batch_size: int = 128
    """Transitions per gradient update."""
    replay_ratio: float = 0.5
    """Gradient updates per env step."""
    learning_starts: int = 500
    """Env steps collected before the first update."""
    huber_delta: float = 1.0
    """Huber loss threshold between quadratic and linear."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    target_tau: float = 0.075
    """1: copy the online network every target_every updates (hard); < 1: Polyak-average with this weight."""
    target_every: int = 1
    """Updates between target-network updates."""
    # --- exploration
    epsilon: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.067})
    """Epsilon schedule, evaluated on epsilon_unit count / epsilon_horizon, then held at its end value."""
    epsilon_unit: str = "steps"
    """steps (env steps) or episodes: what epsilon_horizon counts."""
    epsilon_horizon: int = 7_500
    """Steps or episodes over which the epsilon schedule runs."""
    # --- replay
    buffer_size: int = 50_000
    """Transitions kept; memory is fixed by it."""
    prioritized: bool = False
    """Proportional prioritized replay (sum tree) instead of uniform."""
    per_alpha: float = 0.6
    """Priority exponent: 0 is uniform."""
    per_beta: dict = dataclasses.field(default_factory=lambda: {"kind": "linear", "start": 0.4, "end": 1.0})
    """Importance-sampling exponent over training progress (annealed to 1)."""
    per_eps: float = 1e-3
    """Added to |TD error| so no transition has priority 0."""
    checkpoint_buffer: bool = True
    """Include the replay buffer in checkpoints, so a restored trial continues exactly."""
    # --- runtime
    device: str = "auto"
    """auto (the trial's GPU if Ray gave it one), cpu or cuda. A net this small is fastest on CPU."""
    torch_threads: int = 0
    """Intra-op threads; 0 = the CPUs Ray gave the trial."""
    gamma: float = 0.98
    lr: float = 2.3e-3
    # A checkpoint (the 50k-transition buffer and the envs in flight) costs ~24 ms against ~500 ms
    # per iteration (~180 ms with the earlier, cheaper defaults: every iteration then added 13% to a
    # run, bench/cartpole.py). PBT saves the trials it clones when it needs them, whatever this is.
    checkpoint_every: int = 5
    # 60 iterations (60k env steps) left 1 seed of 5 unsolved in bench/cartpole.py (it solved at 70k).
    iterations: int = 100

    def __post_init__(self):
        super().__post_init__()
        check_range(self, "[1, inf)", "hidden layers n_step batch_size target_every epsilon_horizon buffer_size")
        check_range(self, "[0, inf)", "learning_starts")
        check_range(self, "(0, 1]", "target_tau")
        check_range(self, "(0, inf)", "replay_ratio huber_delta max_grad_norm per_eps")
        if self.epsilon_unit not in ("steps", "episodes"):
            raise ValueError(f"epsilon_unit must be steps or episodes, got {self.epsilon_unit!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be <= buffer_size ({self.buffer_size})")
        for name in ("epsilon", "per_beta"):
            object.__setattr__(self, name, schedules.validate(getattr(self, name), name))


# PBT changes these in place (reset_config); anything else starts the trial afresh.
MUTABLE_FIELDS = (
    "lr",
    "gamma",
    "batch_size",
    "replay_ratio",
    "target_every",
    "target_tau",
    "epsilon_horizon",
    "max_grad_norm",
    "huber_delta",
    "per_alpha",
)
# A checkpoint loads only into a trial with the same env and network.
ARCHITECTURE_FIELDS = ("env", "env_config", "hidden", "layers")


def parse(config: dict) -> DQNConfig:
    """The config, validated: the driver's preflight and the trial's setup both call this.
    The env must have a flat Box observation and Discrete actions, and vectorize as asked."""
    cfg = from_dict(DQNConfig, config, "dqn")
    common.check_discrete_env(cfg.env, "dqn", cfg.env_config)
    common.vectorize_mode(cfg.env, cfg.vectorization)
    shaping(cfg)
    return cfg


def shaping(cfg: DQNConfig) -> np.ndarray:
    """Per-|observation| penalty weights (obs_dim,), from the shaping options; zeros when off."""
    weights = [cfg.shape_position / 2.4, cfg.shape_velocity, cfg.shape_angle / (12 * 2 * math.pi / 360), 0.0]
    if any(weights) and not cfg.env.startswith("CartPole"):
        raise ConfigError(
            f"reward shaping (shape_angle, shape_velocity, shape_position) is defined on "
            f"CartPole's observation; {cfg.env} is not CartPole: leave them at 0"
        )
    return np.asarray(weights, np.float32) if any(weights) else np.zeros(0, np.float32)


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int):
        super().__init__()
        sizes = [obs_dim] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes, sizes[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)  # (B, obs_dim) -> (B, n_actions)


def flatten_parameters(module: nn.Module) -> nn.Parameter:
    """Makes every parameter of `module` a view into one flat Parameter, which is returned: the
    optimizer, the gradient clip and target updates then cost one op each, not one per layer."""
    params = list(module.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    offset = 0
    for p in params:
        p.data = flat.data[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class FusedMLP:
    """Forward and backward of QNetwork written out by hand over its flat parameters (no autograd,
    no nn.Module calls). A DQN update on a 64-unit MLP is dispatch-bound on a CPU (~4.5 us per
    torch op, ~1 ms per autograd update with clip and optimizer): this one is ~50 ops.
    tests/test_rl.py checks its gradients against autograd."""

    def __init__(self, module: QNetwork, flat: nn.Parameter):
        linears = [layer for layer in module.net if isinstance(layer, nn.Linear)]
        self.layers = [(layer.weight.data, layer.bias.data) for layer in linears]  # views into flat
        self.flat = flat
        flat.grad = torch.zeros_like(flat)
        self.grads, offset = [], 0
        for w, b in self.layers:  # gradient views in the same layout as the parameters
            gw = flat.grad[offset : offset + w.numel()].view_as(w)
            offset += w.numel()
            gb = flat.grad[offset : offset + b.numel()]
            offset += b.numel()
            self.grads.append((gw, gb))

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """(B, obs_dim) -> (B, A); `keep` collects each layer's input for backward."""
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            if keep is not None:
                keep.append(x)
            x = torch.addmm(b, x, w.t())
            if i < last:
                x = x.relu_()
        return x

    def backward(self, inputs: list, grad_out: torch.Tensor) -> None:
        """Writes d loss / d parameters into flat.grad, from d loss / d output (B, A)."""
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            gw, gb = self.grads[i]
            torch.mm(g.t(), inputs[i], out=gw)
            torch.sum(g, 0, out=gb)
            if i:
                g = torch.mm(g, self.layers[i][0]).mul_(
                    inputs[i] > 0
                )  # through layer i's weight and the ReLU before it


class FlatAdam:
    """Adam (PyTorch's update, bias-corrected, no weight decay) on one flat parameter in five ops;
    torch.optim's per-step bookkeeping costs more than the arithmetic at this size. Its state dict
    has torch.optim.Adam's layout."""

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - b2**self.steps)).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - b1**self.steps))

    def state_dict(self) -> dict:
        state = {0: {"step": torch.tensor(float(self.steps)), "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0, "params": [0]}
        return {"state": state if self.steps else {}, "param_groups": [group]}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["param_groups"][0]["lr"]
        if state["state"]:
            saved = state["state"][0]
            self.steps = int(saved["step"])
            self.exp_avg.copy_(saved["exp_avg"])
            self.exp_avg_sq.copy_(saved["exp_avg_sq"])


class DQNTrainable(ray.tune.Trainable):
    def setup(self, config: dict):
        cfg = self.cfg = parse(config)
        obs_space, act_space = common.spaces(cfg.env, cfg.env_config)
        self.shaping = shaping(cfg)
        cpus, gpus = runtime.trial_share(self)
        runtime.set_torch_threads(cfg.torch_threads, cpus)
        self.device = runtime.choose_device(cfg.device, gpus)
        self.rng = runtime.seed_everything(cfg.seed)
        self.obs_dim, self.n_actions = obs_space.shape[0], int(act_space.n)
        self.online = QNetwork(self.obs_dim, self.n_actions, cfg.hidden, cfg.layers).to(self.device)
        self.target = QNetwork(self.obs_dim, self.n_actions, cfg.hidden, cfg.layers).to(self.device)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.online_flat, self.target_flat = flatten_parameters(self.online), flatten_parameters(self.target)
        self.target_flat.requires_grad_(False)
        self.fused_online = FusedMLP(self.online, self.online_flat)
        self.fused_target = FusedMLP(self.target, self.target_flat)
        self.optimizer = FlatAdam(self.online_flat.data, cfg.lr)
        self.buffer = (
            PrioritizedReplayBuffer(cfg.buffer_size, self.obs_dim, self.rng, cfg.per_alpha, cfg.per_eps)
            if cfg.prioritized
            else ReplayBuffer(cfg.buffer_size, self.obs_dim, self.rng)
        )
        self.nstep = NStep(cfg.n_step, cfg.gamma)
        self.rollout = common.Rollout(
            cfg.env, cfg.num_envs, cfg.vectorization, int(self.rng.integers(2**31)), cfg.env_config
        )
        self.updates = 0
        self.update_credit = 0.0
        self.evaluation = common.Evaluation(cfg)

    # ------------------------------------------------------------------ schedules

    def progress(self) -> float:
        """Fraction of training done: what lr_schedule and per_beta are evaluated on."""
        return self.rollout.env_steps / self.cfg.total_env_steps

    def epsilon(self) -> float:
        return common.exploration(self.cfg.epsilon, self.cfg.epsilon_unit, self.cfg.epsilon_horizon, self.rollout)

    def learning_rate(self) -> float:
        return self.cfg.lr * schedules.value(self.cfg.lr_schedule, self.progress())

    def beta(self) -> float:
        return schedules.value(self.cfg.per_beta, self.progress())

    # ------------------------------------------------------------------ acting and learning

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        q = self.fused_online.forward(torch.as_tensor(np.asarray(obs, np.float32), device=self.device))  # (E, A)
        return q.argmax(1).cpu().numpy()

    def act(self, epsilon: float) -> np.ndarray:
        n = self.cfg.num_envs
        random_actions = self.rng.integers(0, self.n_actions, n)
        if epsilon >= 1.0:
            return random_actions
        return np.where(self.rng.random(n) < epsilon, random_actions, self.greedy(self.rollout.obs))

    def collect(self) -> int:
        """One vector-env step; stores the n-step transitions it completes. Returns env steps taken."""
        t = self.rollout.step(self.act(self.epsilon()))
        reward = t.reward - np.abs(t.next_obs) @ self.shaping if len(self.shaping) else t.reward
        ready = self.nstep.push(t.obs, t.action, reward, t.next_obs, t.terminated, t.done, t.valid)
        if ready is not None and len(ready["action"]):
            self.buffer.add(**ready)
        return int(t.valid.sum())

    @torch.no_grad()
    def update(self) -> torch.Tensor:
        """One gradient step on a replayed batch: the Huber TD loss (importance-weighted under
        prioritized replay), its gradient by hand (FusedMLP), the global-norm clip, fused Adam."""
        cfg, dev = self.cfg, self.device
        batch, rows, weights = self.buffer.sample(cfg.batch_size, self.beta())
        obs, next_obs = (torch.as_tensor(batch[k], device=dev) for k in ("obs", "next_obs"))  # (B, obs_dim)
        action = torch.as_tensor(batch["action"], device=dev)[:, None]  # (B, 1)
        reward, terminal, discount = (torch.as_tensor(batch[k], device=dev) for k in ("reward", "terminal", "discount"))
        inputs: list = []
        b = len(action)
        if cfg.double_dqn:  # one online pass over obs and next_obs together: (2B, A)
            both = self.fused_online.forward(torch.cat([obs, next_obs]), inputs)
            q_all, best = both[:b], both[b:].argmax(1, keepdim=True)
        else:
            both = q_all = self.fused_online.forward(obs, inputs)
        q = q_all.gather(1, action).squeeze(1)  # (B,)
        next_q = self.fused_target.forward(next_obs)  # (B, A)
        next_value = next_q.gather(1, best).squeeze(1) if cfg.double_dqn else next_q.max(1).values
        td = q - (reward + discount * (1.0 - terminal) * next_value)  # (B,)
        w = torch.as_tensor(weights, device=dev)
        loss = (w * F.huber_loss(td, torch.zeros_like(td), reduction="none", delta=cfg.huber_delta)).mean()
        # d loss / d q = w * clamp(td, -delta, delta) / B, on the taken action only
        grad_q = (w * td.clamp(-cfg.huber_delta, cfg.huber_delta)).div_(len(td))
        grad_out = torch.zeros_like(both)  # the next_obs rows of a double-DQN pass only chose an action: no gradient
        grad_out[:b].scatter_(1, action, grad_q[:, None])
        self.fused_online.backward(inputs, grad_out)
        grad = self.online_flat.grad
        grad.mul_((cfg.max_grad_norm / (grad.norm() + 1e-6)).clamp_(max=1.0))  # as clip_grad_norm_
        self.optimizer.lr = self.learning_rate()
        self.optimizer.step(grad)
        if cfg.prioritized:
            self.buffer.update_priorities(rows, td.cpu().numpy())
        self.updates += 1
        if self.updates % cfg.target_every == 0:
            self._update_target()
        return loss

    @torch.no_grad()
    def _update_target(self) -> None:
        if self.cfg.target_tau >= 1.0:
            self.target_flat.copy_(self.online_flat)
        else:
            self.target_flat.lerp_(self.online_flat, self.cfg.target_tau)

    def step(self) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        rollout = self.rollout
        goal = rollout.env_steps + cfg.steps_per_iteration
        losses, update_seconds, updates_before = [], 0.0, self.updates
        while rollout.env_steps < goal:
            steps = self.collect()
            if rollout.env_steps < cfg.learning_starts or len(self.buffer) < cfg.batch_size:
                continue
            self.update_credit += steps * cfg.replay_ratio
            if self.update_credit >= 1.0:
                tick = time.perf_counter()
                while self.update_credit >= 1.0:
                    losses.append(self.update())
                    self.update_credit -= 1.0
                update_seconds += time.perf_counter() - tick
        train_seconds = time.perf_counter() - start
        updates = self.updates - updates_before
        result = {
            **rollout.metrics(),
            m.TRAIN_UPDATES: self.updates,
            m.TRAIN_EPSILON: self.epsilon(),
            m.TRAIN_LR: self.learning_rate(),
            m.TRAIN_LOSS: torch.stack(losses).mean().item() if losses else float("nan"),
            m.TRAIN_MS_PER_UPDATE: 1000 * update_seconds / updates if updates else float("nan"),
            m.TRAIN_SECONDS_UPDATING: update_seconds,
            m.TRAIN_SECONDS_STEPPING: train_seconds - update_seconds,
            m.TRAIN_ENV_STEPS_PER_S: cfg.steps_per_iteration / train_seconds,
            m.TRAIN_PEAK_RSS_MB: common.peak_rss_mb(),
            **({m.TRAIN_PER_BETA: self.beta()} if cfg.prioritized else {}),
            **{m.HPARAM_PREFIX + name: getattr(cfg, name) for name in MUTABLE_FIELDS},
        }
        return self.evaluation.complete(result, self.greedy, self.iteration, rollout.env_steps)

    def test(self) -> dict:
        """Test figures of the greedy policy on fresh episodes: once, on the selected trial, by the driver."""
        return self.evaluation.test(self.greedy)

    # ------------------------------------------------------------------ checkpoints and PBT

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {
                "config": to_dict(self.cfg),
                "online": self.online.state_dict(),
                "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "counters": {"updates": self.updates, "update_credit": self.update_credit},
                "evaluation": self.evaluation.state_dict(),
                "rng": runtime.rng_state(self.rng),
                "buffer": self.buffer.state_dict() if self.cfg.checkpoint_buffer else None,
                "rollout": self.rollout.state_dict(),
                "nstep": list(self.nstep.window),
            },
            Path(checkpoint_dir) / "state.pt",
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device, weights_only=False)
        runtime.check_checkpoint(state["config"], self.cfg, ARCHITECTURE_FIELDS, checkpoint_dir)
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.update_credit = state["counters"]["updates"], state["counters"]["update_credit"]
        self.evaluation.load_state_dict(state["evaluation"])
        fresh_seed = int(self.rng.integers(2**31))  # drawn before the restore, so it does not shift the RNG
        runtime.restore_rng_state(state["rng"], self.rng)
        if state["buffer"] is not None and len(state["buffer"]["data"]["action"]) <= self.cfg.buffer_size:
            self.buffer.load_state_dict(state["buffer"])
        resumed = self.rollout.load_state_dict(state["rollout"], seed=fresh_seed)
        self.nstep.window = list(state["nstep"]) if resumed else []

    def reset_config(self, new_config: dict) -> bool:
        return runtime.reset_config(self, new_config, parse, MUTABLE_FIELDS, self._apply_mutable)

    def _apply_mutable(self, cfg: DQNConfig) -> None:
        self.nstep.gamma = cfg.gamma
        if isinstance(self.buffer, PrioritizedReplayBuffer):
            self.buffer.alpha = cfg.per_alpha

    def cleanup(self) -> None:
        self.rollout.close()
