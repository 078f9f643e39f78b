"""A model with a real bug, for the fault-tolerance tests: the trial with seed 1 raises at its
second iteration, every time. Everything else is qtable's."""

import dataclasses

from search_spaces.qtable import SPEC as QTABLE
from trainables.rl.qtable import QTableTrainable

SPEC = dataclasses.replace(
    QTABLE, trainable="tests.faulty:BuggyQTable", description="qtable whose seed-1 trial raises (tests only)"
)


class BuggyQTable(QTableTrainable):
    def step(self) -> dict:
        if self.cfg.seed == 1 and self.iteration >= 1:
            raise RuntimeError("a bug in the model: seed 1 breaks at iteration 2")
        return super().step()
