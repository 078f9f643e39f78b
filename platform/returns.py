"""What the target return does: a comparison's selected DT trials, re-measured on test at several
target returns, against the selected trials of a reference model (SASRec) on the same test users.

    python -m platform.returns ~/ray_results/NAME                      # a platform.compare folder
    python -m platform.returns ~/ray_results/NAME --targets 0.6,0.8,1.0 --reference sasrec

Per target return (a fraction of all-5 ratings; the selected trials' own target, chosen on
validation, is marked), over every seed's selected trial and every test user: HR@10 and NDCG@10
over all test users, the same over the users whose target is rated >= 4 (liked), the share of users
given a liked hit, and the mean rating of the targets hit. Each against the reference: a paired
difference over seeds and test users (trainables.stats.paired_bootstrap; for the mean rating of
hits, a ratio, the same resampling applied to hits and rated hits). Every figure here is a test
figure of trials selected on validation; the sweep over targets is an analysis of the selected
models, not a selection.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from platform import results as recorded
from platform import tables
from platform.selection import TEST_FILE
from trainables import metrics as m
from trainables import stats
from trainables.config import ConfigError
from trainables.recsys import protocol
from trainables.recsys.baselines import BaselineTrainable
from trainables.recsys.dt import DecisionTransformerTrainable
from trainables.recsys.sasrec import SASRecTrainable

TRAINABLES = {"dt": DecisionTransformerTrainable, "sasrec": SASRecTrainable}
TRAINABLES |= {name: BaselineTrainable for name in ("ease", "itemknn", "popularity", "toprated")}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m platform.returns", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("comparison", help="a platform.compare folder holding dt-seedS and REFERENCE-seedS experiments")
    p.add_argument("--targets", default="0.6,0.7,0.8,0.9,1.0", help="target returns, fractions of all-5 ratings")
    p.add_argument("--reference", default="sasrec", choices=sorted(TRAINABLES), help="the model compared against")
    return p


def restored(experiment: Path, model: str):
    """The trainable of the experiment's selected trial (named in its test.json), on its last checkpoint."""
    chosen = json.loads((experiment / TEST_FILE).read_text())[0]["trial"]
    trial = next(t for t in recorded.load(experiment).trials if t.name == chosen)
    if not trial.checkpoints:
        raise ConfigError(f"{experiment}: the selected trial {chosen} has no checkpoint; rerun the comparison")
    trainable = TRAINABLES[model](config=dict(trial.config))
    trainable.restore(trial.checkpoints[-1])
    return trainable


def per_user(trainable) -> dict:
    """Per test user: hit (0/1), NDCG@10 and the target's rating."""
    split = trainable.split
    score = trainable.scores if hasattr(trainable, "scores") else trainable.score_fn  # a baseline: its fit
    figures = protocol.evaluate(score, split.test, split.vocabulary, m.TEST, per_user=True)
    users = figures[m.split_metric(m.TEST, m.PER_USER)]
    return {
        "hit": np.asarray(users[m.HR], float),
        "ndcg": np.asarray(users[m.NDCG], float),
        "rating": split.test.target_ratings.astype(float),
    }


def paired(mine: list[dict], ref: list[dict], key: str, liked_only: bool = False) -> tuple[float, float, float]:
    """Mean difference of per-user `key` over seeds and users (only users with a liked target)."""
    diffs = []
    for a, b in zip(mine, ref):
        keep = a["rating"] >= protocol.LIKED if liked_only else np.ones(len(a["hit"]), bool)
        diffs.append(a[key][keep] - b[key][keep])
    return stats.paired_bootstrap(diffs)


def hit_rating(runs: list[dict], ref: list[dict] | None = None, resamples: int = 2000) -> tuple[float, float, float]:
    """Mean rating of the targets hit (minus the reference's on the same resampled users), pooled
    over seeds, with a percentile bootstrap over users within each seed."""

    def ratio(rows, picks):
        hits = sum(float(r["hit"][p].sum()) for r, p in zip(rows, picks))
        rated = sum(float((r["hit"] * r["rating"])[p].sum()) for r, p in zip(rows, picks))
        return rated / hits if hits else np.nan

    everyone = [np.arange(len(r["hit"])) for r in runs]
    value = ratio(runs, everyone) - (ratio(ref, everyone) if ref else 0.0)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(resamples):
        picks = [rng.integers(0, len(p), len(p)) for p in everyone]
        draws.append(ratio(runs, picks) - (ratio(ref, picks) if ref else 0.0))
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return value, float(low), float(high)


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    root = Path(args.comparison).expanduser()
    try:
        targets = [float(t) for t in args.targets.split(",")]
    except ValueError:
        print(f"--targets: expected numbers separated by commas, got {args.targets!r}", file=sys.stderr)
        return 2
    seeds = sorted(int(p.name.rsplit("seed", 1)[1]) for p in root.glob("dt-seed*") if (p / TEST_FILE).exists())
    seeds = [s for s in seeds if (root / f"{args.reference}-seed{s}" / TEST_FILE).exists()]
    if not seeds:
        print(f"{root}: no seed with both dt-seedS and {args.reference}-seedS measured on test; "
              f"run python -m platform.compare dt {args.reference} ... first", file=sys.stderr)  # fmt: skip
        return 2
    dts = [restored(root / f"dt-seed{s}", "dt") for s in seeds]
    ref = [per_user(restored(root / f"{args.reference}-seed{s}", args.reference)) for s in seeds]
    header = ["target return", "HR@10", "NDCG@10", "liked HR@10", "liked NDCG@10", "liked hits / users",
              "mean rating of hits", f"HR@10 - {args.reference}", f"liked HR@10 - {args.reference}",
              f"mean rating of hits - {args.reference}"]  # fmt: skip
    rows = []
    chosen = [t.cfg.target_return_scale for t in dts]  # each seed's own, selected on validation
    label_selected = f"dt, selected ({', '.join(f'{s:.3g}' for s in chosen)})"
    sweeps = [(f"dt, {t:g}", [t] * len(dts)) for t in targets] + [(label_selected, chosen)]
    for label, scales in [(args.reference, None)] + sweeps:
        runs = ref
        if scales is not None:
            runs = []
            for trainable, scale in zip(dts, scales):
                trainable.reset_config({**trainable.config, "target_return_scale": scale})
                runs.append(per_user(trainable))
        liked = np.concatenate([r["rating"] >= protocol.LIKED for r in runs])
        hit, ndcg = np.concatenate([r["hit"] for r in runs]), np.concatenate([r["ndcg"] for r in runs])
        cells = [
            label,
            f"{hit.mean():.4f}",
            f"{ndcg.mean():.4f}",
            f"{hit[liked].mean():.4f}",
            f"{ndcg[liked].mean():.4f}",
            f"{(hit * liked).mean():.4f}",
            "{:.3f} {}".format(*_interval(hit_rating(runs))),
        ]
        if scales is None:
            cells += [""] * 3
        else:
            cells += [
                "{:+.4f} {}".format(*_interval(paired(runs, ref, "hit"), "+.4f")),
                "{:+.4f} {}".format(*_interval(paired(runs, ref, "hit", liked_only=True), "+.4f")),
                "{:+.3f} {}".format(*_interval(hit_rating(runs, ref), "+.3f")),
            ]
        rows.append(cells)
    users = sum(len(r["hit"]) for r in ref)
    print(f"{root}: seeds {seeds}, {users} test users in all; test figures of the trials selected on validation")
    print("\n".join(tables.table(header, rows)))
    method = stats.BOOTSTRAP_METHOD.format(resamples=2000)
    print(f"Intervals: 95%; differences paired over seeds and test users ({method}); "
          "mean rating of hits: percentile bootstrap over users within seeds")  # fmt: skip
    return 0


def _interval(figure: tuple[float, float, float], fmt: str = ".3f") -> tuple[float, str]:
    value, low, high = figure
    return value, tables.interval(low, high, fmt)


if __name__ == "__main__":
    sys.exit(run())
