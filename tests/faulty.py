"""A model with a real bug, for the fault-tolerance tests: the trial with seed 1 raises at its
second iteration, every time. Everything else is qtable's search space."""

from search_spaces.qtable import BUDGETS, CONFIG, METRIC, MODE, check, optuna_space, pbt_mutations  # noqa: F401
from trainables.qtable import QTableTrainable

TRAINABLE = "tests.faulty:BuggyQTable"
DESCRIPTION = "qtable whose seed-1 trial raises (tests only)"


class BuggyQTable(QTableTrainable):
    def step(self) -> dict:
        if self.cfg.seed == 1 and self.iteration >= 1:
            raise RuntimeError("a bug in the model: seed 1 breaks at iteration 2")
        return super().step()
