"""The results layer: where experiments live and how the driver reads them back.

Every command that reads a finished or running experiment (summary, report, compare, al_compare,
ab, the schedulers' resume, tune's restart check, the benchmarks) goes through this module, over
Tune's own ExperimentAnalysis (the reader behind ResultGrid): the trials come from Tune's
experiment state, their rows from the files Tune's loggers wrote (callbacks.py), read by Tune.
Nothing else in the project parses those files.

Selection lives here too, once: the best trial by the spec's metric and mode, the selected trial of
each seed's population, and the groups of trials that differ only in their seeds.
"""

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

OPTUNA_DB = "optuna.db"  # an Optuna run's study, inside its experiment folder
LINEAGE = "lineage.json"  # what was run (platform.lineage writes it before any trial starts)
STUDY = "study"  # optuna+pbt: the study's Tune experiment, inside the PBT experiment's folder
ITERATION = "training_iteration"
TIMESTAMP = "timestamp"  # Tune's, in every row: when the trial reported it (Unix seconds)
ITERATION_SECONDS = "time_this_iter_s"  # Tune's, in every row: how long that iteration took
WALL_SECONDS = "wall_s"  # seconds.__doc__
TRIAL_SECONDS = "trial_s"
SEED_KEYS = ("seed", "data_seed")  # what tells the seeds of one config apart (--seeds, --vary-data)
CONFIG = "config"  # Tune writes the trial's config into every row; its frame flattens it to config/KEY


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

    def folder(self, name: str = "") -> "Folder":
        return Folder(self.experiment(name) if name else self.root)


class Folder:
    """One folder on any storage (a local path or a URI), through pyarrow's filesystem layer, the
    one Tune's storage uses: the experiment folder's own files (lineage.json, test.json, reports)."""

    def __init__(self, location: str):
        from pyarrow import fs

        self._fs_module = fs
        self.location = location
        self.local = "://" not in location
        uri = location if not self.local else f"file://{Path(location).expanduser().resolve()}"
        self.fs, self.root = fs.FileSystem.from_uri(uri)

    def exists(self, relative: str = "") -> bool:
        return self.fs.get_file_info(self._path(relative)).type != self._fs_module.FileType.NotFound

    def read(self, relative: str) -> str:
        with self.fs.open_input_stream(self._path(relative)) as f:
            return f.read().decode()

    def names(self, relative: str = "", directories: bool | None = None) -> list[str]:
        """Entries directly under `relative` (only folders, only files, or both), sorted."""
        selector = self._fs_module.FileSelector(self._path(relative), recursive=False, allow_not_found=True)
        kind = self._fs_module.FileType.Directory
        return sorted(
            i.base_name
            for i in self.fs.get_file_info(selector)
            if directories is None or (i.type == kind) == directories
        )

    def write(self, relative: str, data: bytes) -> str:
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self._path(relative)) as f:
            f.write(data)
        return self._path(relative) if self.local else f"{self.location.rstrip('/')}/{relative}"

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}".rstrip("/")


@dataclasses.dataclass
class TrialRecord:
    """One trial as Tune recorded it: every reported row, its config and its last status."""

    name: str  # its folder, e.g. dt_00002
    trial_id: str
    config: dict  # the config it ended with
    frame: pd.DataFrame  # every reported row, as Tune reads them (the config flattened to config/KEY)
    status: str
    path: str  # its folder (a path or a URI)
    checkpoints: list[str]  # its checkpoint folders that exist, oldest first

    @functools.cached_property
    def rows(self) -> list[dict]:
        return rows(self.frame)

    @property
    def metrics(self) -> dict:
        """The last reported row (what Tune's Result.metrics holds)."""
        return self.rows[-1] if len(self.frame) else {}

    final = metrics

    @property
    def error(self) -> str | None:
        return "ERROR" if self.status == "ERROR" else None

    def series(self, key: str, x: str = ITERATION) -> tuple:
        """(x, values) of a metric against iterations (or another reported counter), NaN-free."""
        import numpy as np

        if key not in self.frame or x not in self.frame:
            return np.array([]), np.array([])
        both = self.frame[[x, key]].apply(pd.to_numeric, errors="coerce")
        both = both[np.isfinite(both[key]) & both[x].notna()]
        xs = both[x].to_numpy()
        return (xs.astype(int) if len(xs) and (xs == xs.astype(int)).all() else xs), both[key].to_numpy(float)


@dataclasses.dataclass
class Experiment:
    name: str
    location: str
    folder: Folder
    trials: list[TrialRecord]


def rows(frame: pd.DataFrame) -> list[dict]:
    """A trial's rows as dicts, as its loggers wrote them: a key a row did not report (NaN in the
    frame) is absent, and the config is one nested dict again."""
    out = []
    for record in frame.to_dict("records"):
        row: dict = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                continue
            if key.startswith(CONFIG + "/"):
                node = row.setdefault(CONFIG, {})
                *parents, leaf = key[len(CONFIG) + 1 :].split("/")
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[leaf] = value
            else:
                row[key] = value
        out.append(row)
    return out


def load(location: str | os.PathLike, metric: str | None = None, mode: str | None = None) -> Experiment:
    """An experiment folder (a path or a URI) as Tune recorded it; raises FileNotFoundError when it
    is not there or holds no Tune experiment."""
    from ray.tune import ExperimentAnalysis

    location = os.fspath(location)
    folder = Folder(location)
    if not folder.exists():
        raise FileNotFoundError(f"{location}: no such experiment folder")
    try:
        analysis = ExperimentAnalysis(
            folder.root, storage_filesystem=folder.fs, default_metric=metric, default_mode=mode
        )
    except ValueError:  # Tune: no experiment_state file there
        raise FileNotFoundError(f"{location}: no Tune experiment state in it; is it a Tune experiment?") from None
    frames = analysis.trial_dataframes
    trials = []
    for trial in analysis.trials:
        name = trial.storage.trial_dir_name
        frame = frames.get(trial.trial_id, pd.DataFrame())
        config = dict(trial.config)  # Tune's: after PBT's exploits, the config the trial ended with
        checkpoints = [n for n in folder.names(name, directories=True) if n.startswith("checkpoint_")]
        path = trial.path if not folder.local else str(Path(folder.root) / name)
        trials.append(
            TrialRecord(name, trial.trial_id, config, frame, trial.status, path, [f"{path}/{c}" for c in checkpoints])
        )
    if not trials:
        raise FileNotFoundError(f"{location}: Tune recorded no trials in it")
    trials.sort(key=lambda t: t.name)
    return Experiment(location.rstrip("/").rsplit("/", 1)[-1], location, folder, trials)


def trial_rows(trial) -> list[dict]:
    """The rows a running (or restored) Tune trial reported so far, read by Tune from its storage,
    local or s3:// / gs://; [] before the first row."""
    from ray.tune import ExperimentAnalysis

    storage = trial.storage
    # Given the trials, Tune reads no experiment state (the name only places the experiment folder):
    # this works before Tune first saved one, and reads only this trial's rows.
    state = f"{storage.experiment_fs_path}/experiment_state.json"
    analysis = ExperimentAnalysis(state, storage_filesystem=storage.storage_filesystem, trials=[trial])
    return rows(analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame()))


def reported(location: str) -> bool:
    """Whether any trial of the experiment reported a row."""
    try:
        return any(len(t.frame) for t in load(location).trials)
    except FileNotFoundError:
        return False


def iterations(location: str) -> int:
    """Trial iterations the experiment ran: every trial's rows, an optuna+pbt study's included."""
    total = sum(len(t.frame) for t in load(location).trials)
    study = f"{location.rstrip('/')}/{STUDY}"
    if Folder(study).exists():
        total += sum(len(t.frame) for t in load(study).trials)
    return total


def seconds(location: str) -> dict[str, float]:
    """How long the experiment ran, an optuna+pbt study's included, from Tune's rows (frame_seconds)."""
    frames = [t.frame for t in load(location).trials]
    study = f"{location.rstrip('/')}/{STUDY}"
    if Folder(study).exists():
        frames += [t.frame for t in load(study).trials]
    return frame_seconds(frames)


def frame_seconds(frames: Iterable[pd.DataFrame]) -> dict[str, float]:
    """{WALL_SECONDS: from the first iteration's start to the last report over all the trials' rows
    (parallel trials count once; a resumed experiment's pause counts too), TRIAL_SECONDS: every
    iteration's seconds summed (parallel trials each count)}; NaN without Tune's time columns. A
    trial's setup before its first iteration and the test measurement after Tune are outside both."""
    starts, ends, busy = [], [], 0.0
    for frame in frames:
        if not len(frame) or TIMESTAMP not in frame or ITERATION_SECONDS not in frame:
            continue
        stamp = pd.to_numeric(frame[TIMESTAMP], errors="coerce")
        took = pd.to_numeric(frame[ITERATION_SECONDS], errors="coerce")
        starts.append((stamp - took).min())
        ends.append(stamp.max())
        busy += float(took.sum())
    if not starts or not all(map(math.isfinite, starts + ends)):
        return {WALL_SECONDS: math.nan, TRIAL_SECONDS: math.nan}
    return {WALL_SECONDS: float(max(ends) - min(starts)), TRIAL_SECONDS: busy}


# ----------------------------------------------------------------------------- selection


def last(item, metric: str) -> float:
    """The last reported `metric` of a trial (Tune's Result or a TrialRecord); NaN when absent."""
    try:
        return float((item.metrics or {}).get(metric, math.nan))
    except (TypeError, ValueError):
        return math.nan


def ranked(items: Iterable, metric: str, mode: str) -> list:
    """The items (Tune Results or TrialRecords) with a finite last `metric` that did not error, best
    first under `mode`; ties keep their order (the first trial wins, as in Tune's get_best_result)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    sign = -1 if mode == "max" else 1
    kept = [item for item in items if item.error is None and math.isfinite(last(item, metric))]
    return sorted(kept, key=lambda item: sign * last(item, metric))


def best(items: Iterable, metric: str, mode: str):
    """The best of `ranked`; None if no trial qualifies."""
    order = ranked(items, metric, mode)
    return order[0] if order else None


def seed_identity(config: dict) -> tuple:
    """(seed, data_seed) of a trial: which of a config's seeds it is (data_seed is None unless set)."""
    return tuple(config.get(k) for k in SEED_KEYS)


def selected(items: Iterable, metric: str, mode: str, per_seed: bool) -> list:
    """The selected trials: with `per_seed`, one per seed's population (its best; with --search
    none, each seed's own trial), in the order the seeds first appear; otherwise the single best."""
    items = list(items)
    if not per_seed:
        one = best(items, metric, mode)
        return [] if one is None else [one]
    populations: dict[tuple, list] = {}
    for item in items:
        populations.setdefault(seed_identity(item.config), []).append(item)
    return [b for b in (best(p, metric, mode) for p in populations.values()) if b is not None]


def config_key(config: dict) -> str:
    """A config without its seeds, as a key: trials with the same key are one config's seeds."""
    return json.dumps({k: v for k, v in config.items() if k not in SEED_KEYS}, sort_keys=True, default=repr)


def seed_groups(items: Iterable, config: Callable[[Any], dict] = lambda item: item.config) -> dict[str, list]:
    """Items grouped by their config without seed and data_seed, in the order configs first appear."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(config_key(config(item)), []).append(item)
    return groups


def model_of(location: str) -> str | None:
    """The model a tunelab experiment ran (its lineage.json), None for a folder tunelab did not write."""
    folder = Folder(location)
    return json.loads(folder.read(LINEAGE)).get("model") if folder.exists(LINEAGE) else None


def best_checkpointed(location: str) -> TrialRecord:
    """The trial with the best last validation figure (its model's metric and mode) among those that
    saved a checkpoint; raises FileNotFoundError when the folder holds no tunelab experiment or no
    such trial."""
    import search_spaces

    model = model_of(location)
    if model is None:
        raise FileNotFoundError(f"{location}: no tunelab experiment there (lineage.json)")
    spec = search_spaces.get(model)
    chosen = best([t for t in load(location).trials if t.checkpoints], spec.metric, spec.mode)
    if chosen is None:
        raise FileNotFoundError(f"{location}: no trial with a finite {spec.metric} and a checkpoint")
    return chosen
