"""Full-ranking evaluation at MovieLens-1M size: 6,000 users x 4,000 items, every user ranked over
every training item (no sampled negatives), chunk by chunk.

    python bench/recsys_eval.py [--users 6040] [--items 3706] [--per-user 165] [--chunk 1024]

The data are random interactions of that shape (a leave-one-out split, so 6,040 validation users);
what is measured is the protocol's cost, which does not depend on what the ratings mean. Printed:
seconds to split, to fit each baseline, to evaluate popularity, EASE, item-kNN and an (untrained)
default DT on all validation users, and the peak memory of the evaluation with and without chunks.
"""

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from trainables import metrics as m  # noqa: E402
from trainables.recsys import baselines, protocol, ratings  # noqa: E402
from trainables.recsys.dt import DecisionTransformerTrainable  # noqa: E402
from trainables.runtime import standalone  # noqa: E402


def random_ratings(users: int, items: int, per_user: int, seed: int = 0) -> ratings.Ratings:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 2 * per_user - 20, size=users)
    popularity = 1.0 / np.arange(1, items + 1)
    popularity /= popularity.sum()
    rows = [rng.choice(items, size=min(n, items), replace=False, p=popularity) for n in lengths]
    return ratings.Ratings(
        users=np.repeat(np.arange(users), [len(r) for r in rows]),
        items=np.concatenate(rows).astype(np.int64),
        ratings=rng.integers(1, 6, size=sum(len(r) for r in rows)).astype(np.float32),
        timesteps=np.concatenate([np.arange(len(r)) for r in rows]).astype(np.int64),
        n_users=users,
        n_items=items,
        source="bench",
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=6040)
    p.add_argument("--items", type=int, default=3706)
    p.add_argument("--per-user", type=int, default=165)
    p.add_argument("--chunk", type=int, default=1024)
    args = p.parse_args()

    data = random_ratings(args.users, args.items, args.per_user)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.tsv"
        lines = (
            f"u{u}\ti{i}\t{int(r)}\t{t}\n" for u, i, r, t in zip(data.users, data.items, data.ratings, data.timesteps)
        )
        path.write_text("".join(lines))
        run(path, args.chunk)


def run(path: Path, chunk: int) -> None:
    cfg = protocol.DataConfig(data=str(path))
    (data, split), seconds = timed(lambda: protocol.load_split(cfg))
    held = split.valid
    shape = f"{len(data.users):,} interactions, {data.n_users:,} users x {data.n_items:,} items"
    print(f"{shape}; load + split {seconds:.1f} s")
    models = {}
    for method in ("popularity", "itemknn", "ease"):
        models[method], seconds = timed(lambda name=method: baselines.fit(baselines.BaselineConfig(method=name), split))
        print(f"fit {method:16s} {seconds:6.1f} s")
    # The DT's own scoring code on this split, weights as initialised (the cost does not depend on them).
    dt, seconds = timed(lambda: standalone(DecisionTransformerTrainable, {"data": str(path)}))
    print(f"setup {'dt':14s} {seconds:6.1f} s")
    models["dt (untrained)"] = dt.scores
    for name, score in models.items():
        figures, seconds = timed(lambda s=score: protocol.evaluate(s, held, split.vocabulary, m.VALID, chunk=chunk))
        print(
            f"evaluate {name:15s} {seconds:6.1f} s for {held.context.count:,} users "
            f"(NDCG@10 {figures[m.split_metric(m.VALID, m.NDCG)]:.4f})"
        )
    ease = models["ease"]
    chunked = peak_mb(lambda: protocol.evaluate(ease, held, split.vocabulary, m.VALID, chunk=chunk))
    whole = peak_mb(lambda: protocol.evaluate(ease, held, split.vocabulary, m.VALID, chunk=held.context.count))
    print(f"peak memory of the EASE evaluation: {chunked:,.0f} MB in chunks of {chunk}, {whole:,.0f} MB in one")


if __name__ == "__main__":
    main()
