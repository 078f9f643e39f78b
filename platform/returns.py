"""What the target return does: a comparison's selected DT trials, re-measured on test at several
target returns, against the selected trials of a reference model (SASRec) on the same test users,
and against that reference given the same rating information through a rating prior.

    python -m platform.returns ~/ray_results/NAME                      # a platform.compare folder
    python -m platform.returns ~/ray_results/NAME --targets 0.6,0.8,1.0 --reference sasrec
    python -m platform.returns ~/ray_results/NAME --reference dt-tokensa   # the folder of `dt:tokens=a`

The DT reads the ratings of the user's history and is asked for a target return; the reference
(SASRec) reads item ids only. A reference given the same information adds a rating prior to its
scores: score + lambda x z(item's shrunk mean training rating, the `toprated` baseline's, z-scored
over the training vocabulary), the simplest way to trade next-item accuracy for liked items. Both
are tuned alike for liked items: per seed, the DT's target (of --targets) and the reference's lambda
(of --lambdas) that maximise validation liked NDCG@10 (targets rated >= 4), then measured on test.

Per row, over every seed's selected trial and every test user: HR@10 and NDCG@10 over all test
users, the same over the users whose target is rated >= 4 (liked), the share of users given a liked
hit, and the mean rating of the targets hit; each against the reference, and the liked-tuned DT
against the liked-tuned reference + prior. Differences are paired over seeds and test users with a
bootstrap that draws the seeds and one set of users shared by every seed (one fixed split: the same
users in every seed); the mean rating of hits, a ratio, under the same draws. The sweeps over
targets and lambdas are test readings of models selected on validation, an analysis, not a
selection; the liked-tuned rows are selected on validation only.
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
from trainables.recsys import baselines, protocol
from trainables.recsys.baselines import BaselineTrainable
from trainables.recsys.dt import DecisionTransformerTrainable
from trainables.recsys.sasrec import SASRecTrainable

TRAINABLES = {"dt": DecisionTransformerTrainable, "sasrec": SASRecTrainable}
TRAINABLES |= {name: BaselineTrainable for name in ("ease", "itemknn", "popularity", "toprated")}
RESAMPLES = 2000
LIKED_NDCG = m.split_metric(m.VALID, m.LIKED + m.NDCG)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m platform.returns", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("comparison", help="a platform.compare folder holding dt-seedS and REFERENCE-seedS experiments")
    p.add_argument("--targets", default="0.6,0.7,0.8,0.9,1.0", help="target returns, fractions of all-5 ratings")
    p.add_argument(
        "--reference",
        default="sasrec",
        help="the compared experiments' folder prefix (REFERENCE-seedS), named after its model: "
        f"{', '.join(sorted(TRAINABLES))}, or a variant's folder such as dt-tokensa",
    )
    p.add_argument("--lambdas", default="0,0.25,0.5,1,2,4", help="the reference's rating-prior weights")
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


def score_of(trainable):
    return trainable.scores if hasattr(trainable, "scores") else trainable.score_fn  # a baseline: its fit


def rating_prior(split: protocol.Split) -> np.ndarray:
    """(I,) the shrunk mean training rating of each item, z-scored over the training vocabulary."""
    ctx = split.valid.context.rows(np.arange(1))
    means = np.asarray(baselines.fit(baselines.BaselineConfig(method="toprated"), split)(ctx)[0], float)
    known = means[split.vocabulary]
    return (means - known.mean()) / max(known.std(), 1e-9)


def with_prior(score, prior: np.ndarray, lam: float):
    return score if lam == 0 else (lambda ctx: np.asarray(score(ctx), np.float64) + lam * prior[None, :])


def per_user(trainable, score=None) -> dict:
    """Per test user: hit (0/1), NDCG@10, the target's rating and the user's index."""
    split = trainable.split
    figures = protocol.evaluate(score or score_of(trainable), split.test, split.vocabulary, m.TEST, per_user=True)
    users = figures[m.split_metric(m.TEST, m.PER_USER)]
    return {
        "hit": np.asarray(users[m.HR], float),
        "ndcg": np.asarray(users[m.NDCG], float),
        "rating": split.test.target_ratings.astype(float),
        "users": np.asarray(users[m.USERS]),
    }


def valid_liked(trainable, score) -> float:
    split = trainable.split
    return protocol.evaluate(score, split.valid, split.vocabulary, m.VALID)[LIKED_NDCG]


def same_users(runs: list[dict]) -> bool:
    return all(np.array_equal(r["users"], runs[0]["users"]) for r in runs)


def paired(mine: list[dict], ref: list[dict], key: str, liked_only: bool = False) -> tuple[float, float, float]:
    """Mean difference of per-user `key` over seeds and users (only users with a liked target)."""
    diffs = []
    for a, b in zip(mine, ref):
        keep = a["rating"] >= protocol.LIKED if liked_only else np.ones(len(a["hit"]), bool)
        diffs.append(a[key][keep] - b[key][keep])
    return stats.paired_bootstrap(diffs, resamples=RESAMPLES, same_users=same_users(mine + ref))


def hit_rating(runs: list[dict], ref: list[dict] | None = None) -> tuple[float, float, float]:
    """Mean rating of the targets hit (minus the reference's), pooled over seeds, with the crossed
    bootstrap of seeds and users (stats.crossed_sums) applied to hits and rated hits alike."""
    rows = runs + (ref or [])
    if not same_users(rows):
        raise ConfigError("the seeds measured different test users; the mean rating of hits needs one fixed split")

    def parts(group):
        hits = np.stack([r["hit"] for r in group])  # (seeds, users)
        return [hits, hits * np.stack([r["rating"] for r in group])]

    matrices = parts(runs) + (parts(ref) if ref else [])
    full = [float(f.sum()) for f in matrices]
    draws = stats.crossed_sums(matrices, RESAMPLES)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = full[1] / full[0] - (full[3] / full[2] if ref else 0.0)
        replicates = draws[1] / draws[0] - (draws[3] / draws[2] if ref else 0.0)
    low, high = np.nanpercentile(replicates, [2.5, 97.5])
    return value, float(low), float(high)


def numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: expected numbers separated by commas, got {text!r}") from None


def with_target(trainable, scale: float):
    trainable.reset_config({**trainable.config, "target_return_scale": scale})
    return trainable


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    root = Path(args.comparison).expanduser()
    model = args.reference.split("-")[0]
    try:
        targets, lambdas = numbers(args.targets, "--targets"), numbers(args.lambdas, "--lambdas")
        if model not in TRAINABLES:
            raise ConfigError(
                f"--reference {args.reference!r}: a folder prefix starting with one of {', '.join(TRAINABLES)}"
            )
        seeds = sorted(int(p.name.rsplit("seed", 1)[1]) for p in root.glob("dt-seed*") if (p / TEST_FILE).exists())
        seeds = [s for s in seeds if (root / f"{args.reference}-seed{s}" / TEST_FILE).exists()]
        if not seeds:
            raise ConfigError(f"{root}: no seed with both dt-seedS and {args.reference}-seedS measured on test; "
                              f"run python -m platform.compare dt ... first")  # fmt: skip
        dts = [restored(root / f"dt-seed{s}", "dt") for s in seeds]
        refs = [restored(root / f"{args.reference}-seed{s}", model) for s in seeds]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.reference
    selected = [t.cfg.target_return_scale for t in dts]  # each seed's own, selected on validation NDCG@10
    priors = [rating_prior(r.split) for r in refs]
    # Tuned for liked items on validation only: each seed's target and lambda.
    liked_targets = [max(targets, key=lambda x: valid_liked(with_target(d, x), score_of(d))) for d in dts]
    liked_lambdas = [
        max(lambdas, key=lambda lam: valid_liked(r, with_prior(score_of(r), prior, lam)))
        for r, prior in zip(refs, priors)
    ]

    def dt_runs(scales):
        return [per_user(with_target(d, x)) for d, x in zip(dts, scales)]

    def ref_runs(lams):
        return [per_user(r, with_prior(score_of(r), prior, lam)) for r, prior, lam in zip(refs, priors, lams)]

    def fmt(values):
        return ", ".join(f"{v:.3g}" for v in values)

    plain = ref_runs([0.0] * len(refs))
    rows = [(name, plain)]
    rows += [(f"{name} + rating prior, lambda {lam:g}", ref_runs([lam] * len(refs))) for lam in lambdas if lam]
    ref_liked = ref_runs(liked_lambdas)
    rows += [(f"{name} + rating prior, tuned for liked ({fmt(liked_lambdas)})", ref_liked)]
    rows += [(f"dt, {x:g}", dt_runs([x] * len(dts))) for x in targets]
    rows += [(f"dt, as selected ({fmt(selected)})", dt_runs(selected))]
    dt_liked = dt_runs(liked_targets)
    rows += [(f"dt, tuned for liked ({fmt(liked_targets)})", dt_liked)]
    header = ["model", "HR@10", "NDCG@10", "liked HR@10", "liked NDCG@10", "liked hits / users",
              "mean rating of hits", f"HR@10 - {name}", f"liked HR@10 - {name}",
              f"mean rating of hits - {name}"]  # fmt: skip
    table = [figures(label, runs, None if runs is plain else plain) for label, runs in rows]
    users = sum(len(r["hit"]) for r in plain)
    print(f"{root}: seeds {seeds}, {users} test users in all; test figures of the trials selected on validation")
    print("\n".join(tables.table(header, table)))
    print(f"\nEach tuned for liked items on validation: dt - ({name} + rating prior), paired over seeds and users:")
    head = ["", "HR@10", "liked HR@10", "NDCG@10", "liked NDCG@10", "mean rating of hits"]
    cells = [
        "{:+.4f} {}".format(*_interval(paired(dt_liked, ref_liked, "hit"), "+.4f")),
        "{:+.4f} {}".format(*_interval(paired(dt_liked, ref_liked, "hit", liked_only=True), "+.4f")),
        "{:+.4f} {}".format(*_interval(paired(dt_liked, ref_liked, "ndcg"), "+.4f")),
        "{:+.4f} {}".format(*_interval(paired(dt_liked, ref_liked, "ndcg", liked_only=True), "+.4f")),
        "{:+.3f} {}".format(*_interval(hit_rating(dt_liked, ref_liked), "+.3f")),
    ]
    print("\n".join(tables.table(head, [["dt - reference + prior", *cells]])))
    method = stats.CROSSED_METHOD.format(resamples=RESAMPLES)
    print(f"Intervals: 95%; differences paired over seeds and test users ({method}); the mean rating of hits "
          "under the same draws")  # fmt: skip
    return 0


def figures(label: str, runs: list[dict], ref: list[dict] | None) -> list[str]:
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
    if ref is None:
        return cells + [""] * 3
    return cells + [
        "{:+.4f} {}".format(*_interval(paired(runs, ref, "hit"), "+.4f")),
        "{:+.4f} {}".format(*_interval(paired(runs, ref, "hit", liked_only=True), "+.4f")),
        "{:+.3f} {}".format(*_interval(hit_rating(runs, ref), "+.3f")),
    ]


def _interval(figure: tuple[float, float, float], fmt: str = ".3f") -> tuple[float, str]:
    value, low, high = figure
    return value, tables.interval(low, high, fmt)


if __name__ == "__main__":
    sys.exit(run())
