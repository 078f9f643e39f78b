"""`python -m platform.al_report FOLDER`: the report of a `platform.al_compare` run (its al.json).

Writes beside it al_report.md and PNGs, and prints the tables:
- the overview: per dataset, start-set size and K, each strategy's AULC minus random's (paired
  95% interval over seeds; * where it excludes 0), and where the pool ran out before the budget;
- per dataset, start and K: each strategy's normalised area under the test learning curve (AULC)
  of accuracy and of balanced accuracy, accuracy at 50/100/200 labels and labels to reach 0.9 x
  full-pool accuracy, mean [95% interval] over seeds, and the paired difference of AULC to random
  and to margin;
- a win/tie/loss matrix: strategy A against B over every (dataset, K), a win when the paired 95%
  interval of A - B lies above 0;
- when K varies: top-K margin minus the best diversity method (k-means, coreset, BADGE) per K;
- learning curves with 95% bands (curves_DATASET_sSTART_kK.png), the matrix (matrix.png), the K sweep
  (k_sweep_DATASET_sSTART.png) and, for a learned policy, its decisions over time: the mean features of the
  candidates it picked as labels accumulate (decisions.png).
"""

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

from platform import tables
from trainables.active.policy import decision_bins
from trainables.active.strategies import label
from trainables.stats import confidence_interval

DIVERSITY = ("kmeans", "coreset", "badge")
FEATURES = ("margin", "entropy", "least conf.", "dist. labelled", "dist. batch", "density", "cluster size")


def load(folder: Path) -> dict:
    """al.json of a finished comparison; of an unfinished one, the runs cells.jsonl holds so far
    (`partial`: the report says so)."""
    path, lines = folder / "al.json", folder / "cells.jsonl"
    if path.exists():
        return json.loads(path.read_text())
    if lines.exists():
        cells = [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]
        return {"cells": cells, "partial": True}
    raise FileNotFoundError(f"{folder}: no al.json or cells.jsonl; run python -m platform.al_compare first")


def groups(cells: list[dict]) -> dict:
    """(dataset, start, k) -> strategy -> seed -> cell."""
    out: dict = {}
    for c in cells:
        out.setdefault((c["dataset"], c["start"], c["k"]), {}).setdefault(c["strategy"], {})[c["seed"]] = c
    return out


def paired(a: dict, b: dict, key: str = "aulc", figures: str = "test") -> tuple[float, float, float]:
    """Mean and 95% t-interval of a - b over the seeds both ran; `figures` test (accuracy) or
    balanced (balanced accuracy)."""
    seeds = sorted(set(a) & set(b))
    mean, _, low, high = confidence_interval([a[s][figures][key] - b[s][figures][key] for s in seeds])
    return mean, low, high


def signed(mean: float, low: float, high: float) -> str:
    """+0.0123 [+0.0050, +0.0200], starred where the interval excludes 0."""
    star = "*" if low > 0 or high < 0 else ""
    return f"{mean:+.4f}{star} {tables.interval(low, high, '+.4f')}"


def overview(by: dict) -> list[str]:
    """Every dataset x start x K: each strategy's AULC minus random's, paired."""
    names = [s for s in sorted({s for runs in by.values() for s in runs}) if s != "random"]
    rows = []
    for (dataset, start, k), strategies in sorted(by.items()):
        if "random" not in strategies:
            continue
        seeds = len(strategies["random"])
        ran_out = sum(c["exhausted"] for runs in strategies.values() for c in runs.values())
        cols = [signed(*paired(strategies[n], strategies["random"])) if n in strategies else "" for n in names]
        rows.append([dataset, start, k, seeds, *cols, f"{ran_out} runs" if ran_out else "never"])
    if not rows:
        return []
    head = ["dataset", "start", "K", "seeds", *(label(n) for n in names), "pool ran out"]
    return ["## Overview: AULC (test accuracy) minus random's, paired over seeds", "",
            "Mean [95% t-interval] of the per-seed difference; * where the interval excludes 0.", "",
            *tables.table(head, rows), ""]  # fmt: skip


def fmt(values: list[float], empty: str = "n/a") -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return empty
    mean, _, low, high = confidence_interval(values)
    return f"{mean:.3f} {tables.interval(low, high, '.3f')}"


def render(folder: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    data = load(folder)
    by = groups(data["cells"])
    partial = ["**Unfinished**: the runs finished so far (`cells.jsonl`); rerun the same "
               "`platform.al_compare` command to complete it.", ""] if data.get("partial") else []  # fmt: skip
    lines = [f"# Batch active learning: {folder.name}", "", *partial,
             "Test figures (the test split is never used for a reward or a choice); mean [95% t-interval] "
             "over seeds; differences paired by seed.", "", *overview(by)]  # fmt: skip
    for (dataset, start, k), strategies in sorted(by.items()):
        seeds = len(next(iter(strategies.values())))
        first = next(iter(next(iter(strategies.values())).values()))
        lines += [f"## {dataset}, start {start}, K = {k} ({seeds} seeds, pool {first['pool']})", ""]
        head = ["strategy", "AULC", "AULC bal. acc.", "acc@50", "acc@100", "acc@200", "labels to 0.9 x full",
                "AULC - random", "AULC - margin", "AULC bal. - random"]  # fmt: skip
        rows = []
        for name, runs in strategies.items():
            cells = list(runs.values())
            cols = [fmt([c["test"][key] for c in cells]) for key in ("aulc",)]
            cols.append(fmt([c["balanced"]["aulc"] for c in cells]))
            cols += [fmt([c["test"][key] for c in cells]) for key in ("acc@50", "acc@100", "acc@200")]
            needed = [c["test"]["labels_to_90"] for c in cells]
            reached = sum(not math.isnan(x) for x in needed)
            cols.append(f"{fmt(needed, 'never')} ({reached}/{len(cells)} reach it)")
            for ref, figures in (("random", "test"), ("margin", "test"), ("random", "balanced")):
                if ref in strategies and ref != name:
                    cols.append(signed(*paired(runs, strategies[ref], figures=figures)))
                else:
                    cols.append("")
            rows.append([label(name), *cols])
        lines += [*tables.table(head, rows), ""]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, runs in strategies.items():
            curves = np.array([[p[2] for p in c["curve"]] for c in runs.values()])  # (seeds, points)
            labels = np.array(next(iter(runs.values()))["curve"])[:, 0]
            mean = curves.mean(0)
            half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
            ax.plot(labels, mean, label=label(name))
            ax.fill_between(labels, mean - half, mean + half, alpha=0.2)
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{dataset}, start {start}, K = {k}")
        ax.legend(fontsize=7, ncol=2)
        note = tables.caption("test accuracy (fraction correct) against labels bought", f"{seeds} seeds",
                              "bands: 95% normal interval of the mean over seeds")  # fmt: skip
        (folder / f"curves_{dataset_file(dataset)}_s{start}_k{k}.png").write_bytes(tables.png(fig, note))
        plt.close(fig)

    names = sorted({s for strategies in by.values() for s in strategies})
    wins = np.zeros((len(names), len(names), 3), int)  # win, tie, loss of row against column
    for strategies in by.values():
        for (i, a), (j, b) in itertools.product(enumerate(names), repeat=2):
            if a == b or a not in strategies or b not in strategies:
                continue
            _, low, high = paired(strategies[a], strategies[b])
            wins[i, j, 0 if low > 0 else 2 if high < 0 else 1] += 1
    lines += ["## Win / tie / loss (row against column, over every dataset and K)", ""]
    rows = [[label(a), *("" if a == b else "/".join(map(str, wins[i, j])) for j, b in enumerate(names))]
            for i, a in enumerate(names)]  # fmt: skip
    lines += [*tables.table(["", *(label(n) for n in names)], rows), ""]
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(names), 1 + 0.6 * len(names)))
    net = wins[:, :, 0] - wins[:, :, 2]
    ax.imshow(net, cmap="RdBu", vmin=-max(1, abs(net).max()), vmax=max(1, abs(net).max()))
    ax.set_xticks(range(len(names)), [label(n) for n in names], rotation=60, fontsize=7)
    ax.set_yticks(range(len(names)), [label(n) for n in names], fontsize=7)
    for i, j in itertools.product(range(len(names)), repeat=2):
        if i != j:
            ax.text(j, i, "/".join(map(str, wins[i, j])), ha="center", va="center", fontsize=6)
    ax.set_title("wins/ties/losses (row vs column)", fontsize=8)
    cases = len(by)
    note = tables.caption("AULC wins/ties/losses", f"{cases} dataset x start x K case(s)", "paired 95% t-intervals")
    (folder / "matrix.png").write_bytes(tables.png(fig, note))
    plt.close(fig)

    lines += k_sweep(by, folder, plt)
    lines += decisions(data["cells"], folder, plt)
    text = "\n".join(lines)
    (folder / "al_report.md").write_text(text + "\n")
    return text


def dataset_file(dataset: str) -> str:
    """A dataset's name as part of a file name (a CSV's path becomes its stem)."""
    return Path(dataset.rpartition(":")[0] or dataset).name.split(".")[0] if "." in dataset else dataset


def k_sweep(by: dict, folder: Path, plt) -> list[str]:
    """Top-K margin minus the best diversity method, per K (the research's hypothesis)."""
    out = []
    for dataset, start in sorted({(d, s) for d, s, _ in by}):
        ks = sorted(k for d, s, k in by if (d, s) == (dataset, start))
        present = [k for k in ks if "margin" in by[(dataset, start, k)]
                   and any(d in by[(dataset, start, k)] for d in DIVERSITY)]  # fmt: skip
        if len(present) < 2:
            continue
        out += [f"## {dataset}, start {start}: margin minus the best diversity method, by K", ""]
        gaps, rows = [], []
        for k in present:
            s = by[(dataset, start, k)]
            mean_aulc = {d: np.mean([c["test"]["aulc"] for c in s[d].values()]) for d in DIVERSITY if d in s}
            best = max(mean_aulc, key=mean_aulc.get)
            mean, low, high = paired(s["margin"], s[best])
            gaps.append((k, mean, low, high))
            rows.append([k, label(best), signed(mean, low, high)])
        out += [*tables.table(["K", "best diversity method", "margin - it (AULC, paired)"], rows), ""]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        k_, mean, low, high = map(np.array, zip(*gaps))
        ax.errorbar(k_, mean, yerr=[mean - low, high - mean], marker="o", capsize=4)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("K (labels per batch)")
        ax.set_ylabel("AULC: margin - best diversity")
        ax.set_title(f"{dataset}, start {start}")
        seeds = len(by[(dataset, start, present[0])]["margin"])
        note = tables.caption("AULC difference (normalised area under the test accuracy curve)", f"{seeds} seeds per K",
                              "paired 95% t-intervals")  # fmt: skip
        (folder / f"k_sweep_{dataset_file(dataset)}_s{start}.png").write_bytes(tables.png(fig, note))
        plt.close(fig)
    return out


def decisions(cells: list[dict], folder: Path, plt) -> list[str]:
    """The learned policy's picks: mean candidate features by fifth of the budget used."""
    runs = [np.asarray(c["decisions"]) for c in cells if c.get("decisions")]
    if not runs:
        return []
    sums, counts = decision_bins(np.concatenate(runs))
    return ["## The learned policy's decisions over time", "",
            *decisions_table(sums, counts, len(runs), folder / "decisions.png", plt)]  # fmt: skip


def decisions_table(sums: np.ndarray, counts: np.ndarray, runs: int, png: Path, plt, title: str = "") -> list[str]:
    """A table (and the figure `png`) of the picked candidates' mean features by fifth of the budget,
    from trainables.active.policy.decision_bins's sums (bins, features) and counts (bins,)."""
    sums, counts = np.asarray(sums, float), np.asarray(counts)
    present = np.flatnonzero(counts)  # a large K leaves some fifths without a pick
    means = sums[present, : len(FEATURES)] / counts[present, None]  # (bins with picks, features)
    out = ["Mean features of the candidates it picked, by fifth of the label budget used:", ""]
    rows = [[f"{20 * b}-{20 * (b + 1)}%", *(f"{v:.3f}" for v in row)] for b, row in zip(present, means)]
    out += tables.table(["budget used", *FEATURES], rows)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for f, name in enumerate(FEATURES):
        ax.plot(present + 1, means[:, f], marker="o", label=name)
    ax.set_xlabel("fifth of the budget")
    ax.set_ylabel("mean feature of picked candidates")
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    note = tables.caption("mean candidate feature (the env's units)", f"{int(counts.sum())} picks over {runs} runs")
    png.write_bytes(tables.png(fig, note))
    plt.close(fig)
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m platform.al_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("folder", help="a platform.al_compare output folder")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        print(render(Path(args.folder).expanduser()))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
