"""The results layer: where experiments live and how the driver reads them back.

Every command that reads a finished or running experiment (summary, report, compare, al_compare,
ab, the schedulers' resume) goes through this module, over Tune's own ExperimentAnalysis/ResultGrid.
"""

import dataclasses
from pathlib import Path

OPTUNA_DB = "optuna.db"  # an Optuna run's study, inside its experiment folder
STUDY = "study"  # optuna+pbt: the study's Tune experiment, inside the PBT experiment's folder


@dataclasses.dataclass(frozen=True)
class Storage:
    """Where experiments live: an absolute local directory, or a URI (s3://, gs://, file://)."""

    root: str

    @staticmethod
    def parse(text: str) -> "Storage":
        return Storage(text if "://" in text else str(Path(text).expanduser().resolve()))

    @property
    def is_uri(self) -> bool:
        return "://" in self.root

    def experiment(self, name: str) -> str:
        """The experiment's location as Tune names it (a path or a URI)."""
        return f"{self.root.rstrip('/')}/{name}"

    def local_experiment(self, name: str) -> Path | None:
        """The experiment's local directory; None on a URI."""
        return None if self.is_uri else Path(self.root) / name
