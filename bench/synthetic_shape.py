"""Does the default generated data have the shape of MovieLens-100K where it matters for comparing
recommenders? Prints, side by side, for ML-100K and for the default synthetic data:

    python bench/synthetic_shape.py [--data ml-100k] [--set synthetic_users=943 ...]

  size          users, items, interactions
  histories     interactions per user: min, median, mean, 90th percentile, max
  popularity    share of interactions of the top 1% and top 10% items, Gini of the interactions
                per item, median interactions per item
  ratings       share of each star (half stars rounded up)
  baselines     test HR@10 (leave-one-out by time, full ranking; the same protocol on both) of
                popularity, EASE, item-kNN over whole histories (`history`) and over "j directly
                follows i" (`next`), and `next` trained on shuffled histories
  sequential    the sequential signal: next / history (a sequential model over a static one on the
                same data) and next / next-shuffled (what order carries)

and the time to generate the synthetic data (no cache: a fresh directory).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from trainables import metrics as m  # noqa: E402
from trainables.recsys import baselines, protocol, ratings  # noqa: E402

MODELS = {  # name -> baseline settings; every one leave-one-out
    "popularity": {"method": "popularity"},
    "ease": {"method": "ease"},
    "itemknn history": {"method": "itemknn"},
    "itemknn next": {"method": "itemknn", "cooccurrence": "next"},
    "itemknn next, shuffled": {"method": "itemknn", "cooccurrence": "next", "shuffle_order": True},
}


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, 1: one item has everything)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def shape(data: ratings.Ratings) -> dict:
    lengths = data.lengths()
    lengths = lengths[lengths > 0]
    counts = np.sort(np.bincount(data.items, minlength=data.n_items))[::-1]
    counts = counts[counts > 0]
    total = counts.sum()
    stars = np.ceil(data.ratings).astype(int)
    out = {
        "users": len(lengths),
        "items": len(counts),
        "interactions": int(total),
        "history min": int(lengths.min()),
        "history median": float(np.median(lengths)),
        "history mean": float(lengths.mean()),
        "history p90": float(np.percentile(lengths, 90)),
        "history max": int(lengths.max()),
        "top 1% items' share": counts[: max(1, round(0.01 * len(counts)))].sum() / total,
        "top 10% items' share": counts[: max(1, round(0.1 * len(counts)))].sum() / total,
        "Gini of item counts": gini(counts),
        "median per item": float(np.median(counts)),
    }
    for star in range(1, 6):
        out[f"rating {star}"] = float((stars == star).mean())
    return out


def hit_rates(cfg: protocol.DataConfig) -> dict:
    out = {}
    for name, settings in MODELS.items():
        bcfg = baselines.BaselineConfig(**{**cfg.__dict__, "split": "loo", **settings})
        _, split = protocol.load_split(bcfg)
        figures = protocol.evaluate(baselines.fit(bcfg, split), split.test, split.vocabulary, m.TEST)
        out[f"HR@10 {name}"] = figures[m.split_metric(m.TEST, m.HR)]
    out["next / history"] = out["HR@10 itemknn next"] / out["HR@10 itemknn history"]
    out["next / next shuffled"] = out["HR@10 itemknn next"] / out["HR@10 itemknn next, shuffled"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="ml-100k", help="the real data to compare with (a name or a path)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a DataConfig field")
    args = parser.parse_args()
    settings = {}
    for pair in args.set:
        key, value = pair.split("=", 1)
        settings[key] = type(getattr(protocol.DataConfig(), key))(value)
    real_cfg = protocol.DataConfig(data=args.data)
    synth_cfg = protocol.DataConfig(**settings)
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: the generation is timed
        start = time.perf_counter()
        ratings.synthetic(protocol.synthetic_spec(synth_cfg), cache_dir=cache)
        generation = time.perf_counter() - start
    columns = []
    for cfg in (real_cfg, synth_cfg):
        data = protocol.load(cfg)
        columns.append({**shape(data), **hit_rates(cfg)})
    print(f"{'':28s} {args.data:>12s} {'synthetic':>12s}")
    for key in columns[0]:
        a, b = columns[0][key], columns[1][key]
        fmt = (lambda v: f"{v:12,d}") if isinstance(a, int) else (lambda v: f"{v:12.3f}")
        print(f"{key:28s} {fmt(a)} {fmt(b)}")
    spec = protocol.synthetic_spec(synth_cfg)
    print(f"synthetic: {spec}")
    print(f"generation time (no cache): {generation:.1f} s")


if __name__ == "__main__":
    main()
