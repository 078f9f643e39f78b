"""The classification datasets of the active-learning benchmark, all offline.

Three sources, one loader (`load`) returning (X as float64, y as 0..C-1):
- `BUNDLED`: real datasets of different size, dimension, class count and balance, shipped in this
  package as gzipped CSVs (envs/data/, provenance and licences in envs/data/README.md) or inside
  scikit-learn; nothing is downloaded, in CI or at run time.
- `GENERATED`: fixed `make_classification` problems (for training a learned policy).
- any CSV a user names: `path/to/file.csv` (the label is the last column) or
  `path/to/file.csv:COLUMN` (the label is COLUMN); every other column must be numeric.
A file that cannot be used raises DatasetError, one line naming the file, the problem and the fix.
"""

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_classification

DATA = Path(__file__).parent / "data"


class DatasetError(ValueError):
    """A dataset name or file that cannot be used; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class Bundled:
    source: str  # "sklearn:<loader>" or the CSV's file name in envs/data/
    about: str  # one line for the docs: where it comes from, what the label is


BUNDLED = {
    "digits": Bundled("sklearn:digits", "UCI optical digits 8x8 (scikit-learn), 10 classes"),
    "breast_cancer": Bundled("sklearn:breast_cancer", "UCI Wisconsin diagnostic (scikit-learn), malignant 37%"),
    "segment": Bundled("segment.csv.gz", "UCI image segmentation, 7 outdoor-image region classes"),
    "satimage": Bundled("satimage.csv.gz", "UCI Statlog Landsat satellite, 6 soil classes (10-24%)"),
    "spambase": Bundled("spambase.csv.gz", "UCI Spambase (KEEL copy, 4 duplicates dropped), spam 39%"),
    "vehicle": Bundled("vehicle.csv.gz", "UCI Statlog vehicle silhouettes, 4 vehicle classes"),
    "page_blocks": Bundled("page_blocks.csv.gz", "UCI page blocks, text vs. the 4 other block types (10%)"),
    "yeast3": Bundled("yeast3.csv.gz", "UCI yeast, ME3 localisation vs. the rest (11%)"),
    "pendigits": Bundled("pendigits.csv.gz", "UCI pen-based handwritten digits, 10 classes"),
    "wine": Bundled("sklearn:wine", "UCI wine (scikit-learn), 178 points: too small for a budget of 100"),
    "iris": Bundled("sklearn:iris", "UCI iris (scikit-learn), 150 points: too small for a budget of 100"),
}
# The benchmark's default suite: every bundled set whose pool outlasts the budget.
SUITE = ("digits", "breast_cancer", "segment", "satimage", "spambase", "vehicle", "page_blocks", "yeast3",
         "pendigits")  # fmt: skip
SKLEARN = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine, "iris": load_iris}
GENERATED = {  # name -> make_classification settings, from easy to hard
    "gen-easy": {"n_samples": 1500, "n_features": 20, "n_informative": 10, "n_classes": 3, "class_sep": 1.5},
    "gen-medium": {"n_samples": 1500, "n_features": 20, "n_informative": 6, "n_classes": 4, "class_sep": 1.0},
    "gen-large": {"n_samples": 2500, "n_features": 20, "n_informative": 8, "n_classes": 4, "class_sep": 1.0},
    "gen-hard": {"n_samples": 1500, "n_features": 30, "n_informative": 5, "n_classes": 5, "class_sep": 0.7,
                 "flip_y": 0.05},
}  # fmt: skip
NAMES = tuple(BUNDLED) + tuple(GENERATED)


CSV_SUFFIXES = (".csv", ".csv.gz")


def csv_parts(name: str) -> tuple[str, str] | None:
    """(path, label column or "") of a CSV dataset name, None for any other name."""
    path, _, column = name.rpartition(":")
    if path.lower().endswith(CSV_SUFFIXES):
        return path, column
    return (name, "") if name.lower().endswith(CSV_SUFFIXES) else None


def is_csv(name: str) -> bool:
    return csv_parts(name) is not None


def check_name(name: str) -> None:
    """Raises DatasetError unless `name` is a known dataset or a CSV path (whose file is read later)."""
    if name not in NAMES and not is_csv(name):
        raise DatasetError(f"dataset {name!r} is unknown; choose from {', '.join(NAMES)} or name a CSV file "
                           "(path/to/file.csv, label last, or path/to/file.csv:LABEL_COLUMN)")  # fmt: skip


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float64, not yet standardised; y (n,) int64 in 0..C-1, classes in sorted order)."""
    check_name(name)
    if is_csv(name):
        x, labels = read_csv(name)
    elif name in GENERATED:
        x, labels = make_classification(random_state=0, **GENERATED[name])
    elif name in SKLEARN:
        x, labels = SKLEARN[name](return_X_y=True)
    else:
        frame = pd.read_csv(DATA / BUNDLED[name].source)
        x, labels = frame.drop(columns="label").to_numpy(), frame["label"].to_numpy()
    return np.asarray(x, np.float64), np.unique(labels, return_inverse=True)[1].astype(np.int64)


def read_csv(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """A user's CSV (`file.csv` or `file.csv:LABEL`): a header row, numeric features, any labels."""
    path, column = csv_parts(spec)
    where = f"{path}:"
    if not Path(path).expanduser().is_file():
        raise DatasetError(f"{where} no such file; give the path of a CSV with a header row")
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(Path(path).expanduser(), "rt") as handle:
            frame = pd.read_csv(handle)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatasetError(f"{where} not a readable CSV ({first}); write it with a header row and commas") from None
    column = column or (frame.columns[-1] if len(frame.columns) else "")
    if column not in frame.columns:
        raise DatasetError(f"{where} no column {column!r}; its columns are {', '.join(map(str, frame.columns))}")
    features = frame.drop(columns=column)
    if features.shape[1] == 0:
        raise DatasetError(f"{where} no feature column besides the label {column!r}; add numeric features")
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise DatasetError(f"{where} column {text[0]!r} is not numeric; encode it as numbers or drop it")
    rows = features.isna().any(axis=1) | frame[column].isna()
    if rows.any():
        raise DatasetError(f"{where} {int(rows.sum())} row(s) have empty cells (first: data row "
                           f"{int(np.argmax(rows.to_numpy())) + 1}); fill or drop them")  # fmt: skip
    counts = frame[column].value_counts()
    if len(counts) < 2:
        raise DatasetError(f"{where} the label column {column!r} has {len(counts)} class(es); a classifier needs 2+")
    return features.to_numpy(np.float64), frame[column].astype(str).to_numpy()
