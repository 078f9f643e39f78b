"""Memory and time at MovieLens-20M's shape: does every recommender fit in 16 GB?

    python bench/recsys_memory.py                    # 20M interactions, 138,493 users, 26,744 items
    python bench/recsys_memory.py --scale 0.01       # 1/100 of the users and interactions (a quick check)
    python bench/recsys_memory.py --only load,itemknn --file /tmp/ml20m-shape.csv   # reuse a file

The file is generated once (`--file`, written as ML-20M's ratings.csv) with ML-20M's shape:
  users     138,493 x scale, each with at least 20 ratings; history lengths 20 + lognormal, fitted to
            ML-20M's median 68 and mean 144, capped at its longest history (9,254)
  items     26,744 x sqrt(scale); popularity p(rank) ~ (rank + 400)^-2.3, fitted to ML-20M's most
            rated movie (0.34% of ratings) and median movie (18 ratings)
  ratings   half stars with ML-20M's distribution; timestamps per user increasing, with same-second
            ties (30% of steps), as MovieLens rates in batches
Each stage runs in its own process (its peak RSS, VmHWM, is that stage alone, loading
included): load (read + split), then per model a fit and a full-ranking evaluation of every test
user (EASE is refused with its one line where its dense inverse exceeds max_memory_gb), and the DT
and SASRec (where trainables/recsys/sasrec.py exists): setup and `--steps` training batches of one
epoch's windows, the epoch time extrapolated from them, then the full-ranking test evaluation.
Printed: one row per stage (wall seconds per phase, the stage's CPU seconds, peak RSS in GB), and
the ratio of its peak memory to the 16 GB budget.
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ML20M_USERS, ML20M_ITEMS, ML20M_LONGEST = 138_493, 26_744, 9_254
HALF_STARS = np.arange(1, 11) / 2
# Share of each half star in ML-20M's ratings.csv (0.5 .. 5.0), from its README's histogram.
STAR_SHARE = np.array([1.2, 3.4, 1.4, 7.2, 4.2, 21.4, 10.8, 27.9, 7.7, 14.7])
BUDGET_GB = 16.0
STAGES = ("load", "popularity", "toprated", "itemknn", "ease", "dt", "sasrec")


def generate(path: Path, scale: float, seed: int = 0) -> dict:
    """Writes an ML-20M-shaped ratings.csv; returns its shape."""
    rng = np.random.default_rng(seed)
    n_users = max(50, round(ML20M_USERS * scale))
    n_items = max(100, round(ML20M_ITEMS * math.sqrt(scale)))
    longest = min(ML20M_LONGEST, n_items // 2)
    lengths = np.minimum(20 + np.rint(rng.lognormal(np.log(48), 1.38, n_users)), longest).astype(np.int64)
    popularity = (np.arange(n_items) + 400.0 * math.sqrt(scale)) ** -2.3
    popularity /= popularity.sum()
    # Draw with replacement and keep each user's first `length` distinct items (sampling without
    # replacement per user would cost users x items); users left short (heavy ones, whose draws
    # repeat the popular items) draw again from a flatter popularity until every history is full.
    users, items = np.zeros(0, np.int64), np.zeros(0, np.int64)
    short, flatten = lengths.copy(), 1.0
    while short.sum():
        need = np.flatnonzero(short)
        p = popularity**flatten / (popularity**flatten).sum()
        new_users = np.repeat(need, np.ceil(short[need] * 1.3).astype(np.int64) + 5)
        users = np.concatenate([users, new_users])
        items = np.concatenate([items, rng.choice(n_items, size=len(new_users), p=p)])
        _, first = np.unique(users * n_items + items, return_index=True)
        first.sort()  # back in draw order
        users, items = users[first], items[first]
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        starts = np.searchsorted(users, np.arange(n_users))
        keep = np.arange(len(users)) - starts[users] < lengths[users]
        users, items = users[keep], items[keep]
        short = lengths - np.bincount(users, minlength=n_users)
        flatten *= 0.7
    n = len(users)
    gaps = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 86_400, n))
    origin = rng.integers(789_652_009, 1_427_784_002, n_users)  # ML-20M's first and last timestamps
    starts = np.searchsorted(users, np.arange(n_users))
    times = origin[users] + np.cumsum(gaps) - np.cumsum(gaps)[starts][users]
    stars = rng.choice(HALF_STARS, size=n, p=STAR_SHARE / STAR_SHARE.sum())
    order = rng.permutation(n)  # the file's row order carries nothing
    frame = pd.DataFrame({"userId": users[order] + 1, "movieId": items[order] + 1})
    frame["rating"], frame["timestamp"] = stars[order], times[order]
    frame.to_csv(path, index=False, float_format="%.1f")
    counts = np.bincount(users, minlength=n_users)
    return {
        "interactions": int(n),
        "users": int(n_users),
        "items": int(len(np.unique(items))),
        "history_median": float(np.median(counts)),
        "history_mean": float(counts.mean()),
        "history_max": int(counts.max()),
        "top_item_share": float(np.bincount(items).max() / n),
    }


def peak_gb() -> float:
    """This process's peak resident memory since it started (exec'd). Linux's VmHWM, not ru_maxrss:
    ru_maxrss carries the parent's high-water mark across fork and exec (here the generator's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def stage(name: str, path: str, steps: int) -> dict:
    """One stage in this process: its seconds and this process's peak RSS."""
    from trainables import metrics as m
    from trainables.config import ConfigError
    from trainables.recsys import baselines, protocol

    out = {"stage": name}
    start = time.perf_counter()
    data_cfg = {"data": path}
    if name == "load":
        from trainables.recsys import ratings

        data = ratings.load(path)
        out["load_s"] = time.perf_counter() - start
        protocol.make_split(data, protocol.DataConfig(data=path))
        out["split_s"] = time.perf_counter() - start - out["load_s"]
    elif name in ("popularity", "toprated", "itemknn", "ease"):
        cfg = baselines.BaselineConfig(method=name, **data_cfg)
        _, split = protocol.load_split(cfg)
        out["load_s"] = time.perf_counter() - start
        fit_start = time.perf_counter()
        try:
            score_fn = baselines.fit(cfg, split)
        except ConfigError as err:
            out["refused"] = str(err)
            out["peak_gb"] = peak_gb()
            out["cpu_s"] = time.process_time()
            return out
        out["fit_s"] = time.perf_counter() - fit_start
        eval_start = time.perf_counter()
        figures = protocol.evaluate(score_fn, split.test, split.vocabulary, m.TEST)
        out["eval_s"] = time.perf_counter() - eval_start
        out["eval_users"] = figures[m.split_metric(m.TEST, m.USERS)]
        out["hr@10"] = figures[m.split_metric(m.TEST, m.HR)]
    else:  # sasrec or dt: setup, one epoch's windows, `steps` batches of it (the epoch extrapolated), test
        import torch

        from trainables.recsys import dt, sasrec

        trainable_class = sasrec.SASRecTrainable if name == "sasrec" else dt.DecisionTransformerTrainable
        trainable = trainable_class(config={**data_cfg, "torch_threads": 2})
        out["setup_s"] = time.perf_counter() - start
        windows_start = time.perf_counter()
        windows = sasrec.epoch_windows(trainable.split.train, trainable.cfg.context_length, trainable.rng)
        out["windows_s"] = time.perf_counter() - windows_start
        batch = trainable.cfg.batch_size
        train_start = time.perf_counter()
        trainable.model.train()
        for lo in range(0, steps * batch, batch):  # the body of SASRecTrainable.train_epoch (the DT's too)
            at, real, known = (torch.as_tensor(a) for a in windows.batch(np.arange(lo, lo + batch)))
            loss, _ = trainable.batch_loss(at, real, known)
            trainable.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainable.optimizer.step()
        per_step = (time.perf_counter() - train_start) / steps
        out["steps"], out["step_ms"] = steps, 1000 * per_step
        out["epoch_steps"] = math.ceil(len(windows.start) / batch)
        out["epoch_s_extrapolated"] = out["windows_s"] + per_step * out["epoch_steps"]
        eval_start = time.perf_counter()
        figures = trainable.test()
        out["test_eval_s"] = time.perf_counter() - eval_start
        out["eval_users"] = figures[m.split_metric(m.TEST, m.USERS)]
    out["peak_gb"] = peak_gb()
    out["cpu_s"] = time.process_time()  # all threads: on a shared machine, steadier than wall time
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of ML-20M's users and interactions")
    parser.add_argument("--file", type=Path, help="the generated file (written if missing); default in /tmp")
    parser.add_argument("--only", default=",".join(STAGES), help="comma-separated stages")
    parser.add_argument("--steps", type=int, default=50, help="DT/SASRec training steps timed (epoch extrapolated)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage, print JSON
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, str(args.file), args.steps)))
        return
    path = args.file or Path(f"/tmp/tunelab-ml20m-shape-{args.scale:g}.csv")
    if not path.exists():
        start = time.perf_counter()
        shape = generate(path, args.scale)
        print(f"generated {path} in {time.perf_counter() - start:.0f} s: {json.dumps(shape)}", flush=True)
    stages = [s for s in args.only.split(",") if s]
    if "sasrec" in stages and not (ROOT / "trainables" / "recsys" / "sasrec.py").exists():
        print("sasrec: trainables/recsys/sasrec.py does not exist at this commit; skipped", flush=True)
        stages.remove("sasrec")
    for name in stages:
        command = [sys.executable, __file__, "--stage", name, "--file", str(path), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{name}: failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        print(f"{figures}, peak/budget {row['peak_gb'] / BUDGET_GB:.2f}", flush=True)


if __name__ == "__main__":
    main()
