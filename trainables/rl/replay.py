"""Replay buffers in preallocated numpy arrays: memory is fixed by the capacity and every add and
sample costs the same at transition 1,000 as at transition 1,000,000.

A transition is already n-step aggregated (see NStep): (obs, action, reward = discounted n-step
return, next_obs, terminal, discount = gamma ** steps actually taken).
"""

import numpy as np

FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "discount")


class ReplayBuffer:
    """Uniform replay over a ring of `capacity` transitions."""

    def __init__(self, capacity: int, obs_dim: int, rng: np.random.Generator):
        if capacity < 1:
            raise ValueError(f"buffer_size must be >= 1, got {capacity}")
        self.capacity, self.rng = capacity, rng
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "action": np.zeros(capacity, np.int64),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminal": np.zeros(capacity, np.float32),
            "discount": np.zeros(capacity, np.float32),
        }
        self.pos = 0  # next row to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: np.ndarray) -> np.ndarray:
        """Writes k transitions (arrays with a leading k axis); returns the rows written."""
        k = len(batch["action"])
        rows = (self.pos + np.arange(k)) % self.capacity
        for name in FIELDS:
            self.data[name][rows] = batch[name]
        self.pos = int((self.pos + k) % self.capacity)
        self.size = min(self.size + k, self.capacity)
        return rows

    def sample(self, batch_size: int, beta: float = 0.0) -> tuple[dict, np.ndarray, np.ndarray]:
        """(batch, rows, importance weights); uniform sampling weighs every row 1."""
        rows = self.rng.integers(0, self.size, batch_size)
        return self._gather(rows), rows, np.ones(batch_size, np.float32)

    def update_priorities(self, rows: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform replay has no priorities."""

    def _gather(self, rows: np.ndarray) -> dict:
        return {name: array[rows] for name, array in self.data.items()}

    def state_dict(self) -> dict:
        return {"data": {k: v[: self.size].copy() for k, v in self.data.items()}, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity:
            raise ValueError(f"checkpoint buffer holds {size} transitions, more than buffer_size {self.capacity}")
        for name, array in state["data"].items():
            self.data[name][:size] = array
        self.pos, self.size = state["pos"] % self.capacity, size


class SumTree:
    """Binary tree of priorities in one array: leaves at [n, 2n), node i = node 2i + node 2i+1.

    Updates and prefix-sum searches are vectorized over a batch: one numpy op per tree level.
    """

    def __init__(self, capacity: int):
        self.leaves = 1 << max(0, (capacity - 1).bit_length())  # capacity rounded up to a power of two
        self.depth = self.leaves.bit_length() - 1
        self.tree = np.zeros(2 * self.leaves, np.float64)

    def total(self) -> float:
        return float(self.tree[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.tree[self.leaves + np.asarray(index)]

    def set(self, index: np.ndarray, priority: np.ndarray) -> None:
        node = self.leaves + np.asarray(index)
        self.tree[node] = priority
        for _ in range(self.depth):
            # Recompute parents from their children: a duplicate index writes the same sum twice.
            node = node >> 1
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value u in [0, total): the leaf i with prefix(i) <= u < prefix(i) + p_i."""
        u = np.asarray(mass, np.float64).copy()
        node = np.ones(len(u), np.int64)
        for _ in range(self.depth):
            left = 2 * node
            right = u >= self.tree[left]
            u -= np.where(right, self.tree[left], 0.0)
            node = left + right
        return node - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): P(i) = p_i^alpha / sum_j p_j^alpha.

    New transitions get the largest priority seen so far, so each is replayed at least once soon.
    Importance weights (N P(i))^-beta are divided by the batch's largest weight (not the buffer's,
    which would need a second min-tree per update for a constant factor the learning rate absorbs).
    """

    def __init__(self, capacity: int, obs_dim: int, rng: np.random.Generator, alpha: float, eps: float):
        super().__init__(capacity, obs_dim, rng)
        if alpha < 0:
            raise ValueError(f"per_alpha must be >= 0, got {alpha}")
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    def add(self, **batch: np.ndarray) -> np.ndarray:
        rows = super().add(**batch)
        self.tree.set(rows, np.full(len(rows), self.max_priority**self.alpha))
        return rows

    def sample(self, batch_size: int, beta: float = 0.4) -> tuple[dict, np.ndarray, np.ndarray]:
        total = self.tree.total()
        # Stratified: one uniform draw in each of batch_size equal slices of the total mass.
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        rows = np.minimum(self.tree.find(np.minimum(mass, np.nextafter(total, 0))), self.size - 1)
        probs = self.tree.get(rows) / total
        weights = (self.size * probs) ** -beta
        return self._gather(rows), rows, (weights / weights.max()).astype(np.float32)

    def update_priorities(self, rows: np.ndarray, td_errors: np.ndarray) -> None:
        priority = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.set(rows, priority**self.alpha)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "priorities": self.tree.get(np.arange(self.size)),
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree = SumTree(self.capacity)
        self.tree.set(np.arange(self.size), state["priorities"])
        self.max_priority = state["max_priority"]


class NStep:
    """Turns vector-env steps into n-step transitions, for E envs at once.

    Keeps the last n steps; once it holds n, the oldest step of each env becomes one transition:
    reward = sum_k gamma^k r_k up to the episode's end or n steps, next_obs = the observation after
    the last step taken, terminal = whether the episode terminated there (a time-limit truncation is
    not terminal: the target bootstraps from the final observation), discount = gamma^steps taken.
    `valid` marks real steps: with next-step autoreset, the step after an episode ends only resets
    the env and is not a transition.
    """

    def __init__(self, n: int, gamma: float):
        self.n, self.gamma = n, gamma
        self.window: list[tuple] = []

    def push(self, obs, action, reward, next_obs, terminated, done, valid) -> dict | None:
        self.window.append((obs, action, reward, next_obs, terminated, done, valid))
        if len(self.window) < self.n:
            return None
        first = self.window[0]
        ret = np.zeros(len(first[1]), np.float32)
        final_obs = first[3].copy()
        terminal = np.zeros(len(ret), np.float32)
        discount = np.ones(len(ret), np.float32)
        alive = first[6].copy()  # still inside the episode that started the window
        for _, _, r, nxt, term, dn, _ in self.window:
            ret += np.where(alive, discount * r, 0.0)
            final_obs[alive] = nxt[alive]
            terminal[alive] = term[alive]
            discount = np.where(alive, discount * self.gamma, discount)
            alive &= ~dn
        self.window.pop(0)
        keep = first[6]
        return {
            "obs": first[0][keep],
            "action": first[1][keep],
            "reward": ret[keep],
            "next_obs": final_obs[keep],
            "terminal": terminal[keep],
            "discount": discount[keep],
        }
