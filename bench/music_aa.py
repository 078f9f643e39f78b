"""A/A calibration of `platform.ab` in both designs (run from the repository root:
`python bench/music_aa.py [RUNS]`, default 200).

Each run is an A/A test of two random arms with independent streams on a fresh population and salt
(`platform.ab.aa_runs`), at 300 users per arm in both designs (split: 600 users divided; paired: 300
users in both arms), analysed with 10 interim looks; both designs again with CUPED (each user's
pre-experiment sessions). Printed as markdown: per design and metric the
false positives, their rate and its exact binomial 95% interval; stopping at the first look whose
fixed-horizon p < alpha (naive peeking) against mSPRT; and the spread of the primary metric's
difference across runs, split over paired (the measured variance reduction of pairing) beside the
mean per-run estimate of it; and per CUPED design the mean of the runs' CUPED variance reduction of
the primary metric's difference (the ratio each A/B prints as "CUPED: variance Nx smaller").
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.modules.pop("platform", None)

from platform import ab, ab_stats  # noqa: E402

PER_ARM, LOOKS = 300, 10


def main(runs: int) -> dict:
    """Prints the tables; returns {"results": aa_runs' per configuration, "cuped": mean CUPED variance
    reduction per CUPED configuration}."""
    configurations = {
        "split": (ab_stats.SPLIT, 2 * PER_ARM, False),
        "paired": (ab_stats.PAIRED, PER_ARM, False),
        "split, CUPED": (ab_stats.SPLIT, 2 * PER_ARM, True),
        "paired, CUPED": (ab_stats.PAIRED, PER_ARM, True),
    }
    results, seconds = {}, {}
    for name, (design, users, cuped) in configurations.items():
        tick = time.perf_counter()
        results[name] = ab.aa_runs(design, runs, users, alpha=0.05, looks=LOOKS, cuped=cuped)
        seconds[name] = time.perf_counter() - tick
    rows = list(ab.METRICS) + ["any secondary", "naive peeking", "mSPRT"]
    nominal = {m: "5%" for m in rows} | {m: "1.67%" for m in ab.SECONDARY} | {"naive peeking": "5% (claimed)"}
    print(f"| metric (family level) | nominal | {' | '.join(configurations)} |")
    print("|---|---|" + "---|" * len(configurations))
    for metric in rows:
        cells = []
        for name in configurations:
            hits = results[name]["counts"][metric]
            low, high = ab_stats.clopper_pearson(hits, runs)
            cells.append(f"{hits}/{runs} = {hits / runs:.1%} [{low:.1%}, {high:.1%}]")
        print(f"| {metric} | {nominal[metric]} | {' | '.join(cells)} |")
    split, paired = results["split"]["diffs"].var(ddof=1), results["paired"]["diffs"].var(ddof=1)
    print(
        f"\nPrimary metric's difference across {runs} runs at {PER_ARM} users per arm: variance split "
        f"{split:.5f}, paired {paired:.5f}, ratio {split / paired:.2f}; "
        f"the paired runs' own estimate of that ratio, mean {results['paired']['pairing'].mean():.2f}."
    )
    cuped = {name: float(results[name]["cuped"].mean()) for name, (_, _, on) in configurations.items() if on}
    print(
        "CUPED variance reduction of the primary metric's difference (each run's \"CUPED: variance Nx "
        f'smaller"), mean over {runs} runs: ' + "; ".join(f"{name} {ratio:.2f}x" for name, ratio in cuped.items())
    )
    print("seconds (wall):", {k: round(v, 1) for k, v in seconds.items()})
    return {"results": results, "cuped": cuped}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
