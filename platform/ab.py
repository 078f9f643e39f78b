"""`python -m platform.ab music ARM [ARM ...] --users N`: an A/B test of recommenders in the music
session simulator (envs/music.py). The first arm is the control.

    python -m platform.ab music random sticky embed:~/ray_results/music-pbt-... oracle --users 10000
    python -m platform.ab music toppop toppop#b --users 10000          # an A/A test
    python -m platform.ab music sticky http://localhost:5000/next       # your own service as an arm

Arms (each sees only what a service could: the session so far, and what it learned from the
logged sessions of --log-users users of population --log-seed; only the oracle reads the truth):
  random, sticky, sticky-fallback   heuristics
  toppop, i2i          the most played track in the logs; item-to-item from co-listens in them
  greedy               one step ahead over the RL arms' own observation: the candidate with the
                       highest listened fraction predicted from its features (a model fitted on
                       logs); added beside every learned arm, which counts as a win only against it
  oracle               the ceiling, not a service: reads the hidden session vector
  embed:PATH           a trained `music` model: its experiment folder (the trial with the best
                       validation score, its last checkpoint) or a model.npz
  policy:PATH          an RL model trained on tunelab/MusicSession-v0 (`python -m platform.tune dqn
                       --set env=tunelab/MusicSession-v0`, or ppo): its experiment folder (the
                       best trial) or one trial's folder
  http://HOST:PORT/P   a recommender service: POST {"user", "track", "time"} -> {"track"}
  ARM#TAG              the same arm again under another name (A/A tests)

Users 0..N-1 of population --seed are split between the arms by a salted hash of the user id;
every draw of the simulator is a hash of (seed, user, session, step), so a user's interests,
session starts and patience coins are the same in whichever arm the user lands (common random
numbers). Per user: listening time per session, tracks per session, sessions, distinct artists
per session; per arm also catalogue coverage. Each treatment against the control: the relative
effect with a Welch interval at --alpha, Bonferroni-corrected over the treatments (Holm-adjusted
p-values beside), and a sample-ratio check of the split. Each learned arm (embed:, policy:) is
also compared with greedy. A learned arm trained or selected on the A/B's own population is
refused. Written to STORAGE/NAME: ab.csv, ab.json, ab.png (and sessions.parquet with --log).
"""

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

import envs
from envs import music
from platform import results as recorded
from platform import tables
from trainables.config import ConfigError, apply_assignments, parse_assignment
from trainables.music import arms as music_arms

METRICS = ("time_per_session", "tracks_per_session", "sessions", "artists_per_session")
PRIMARY = METRICS[0]
UNITS = {  # per user, each a mean over the user's sessions but `sessions`
    "time_per_session": "tracks listened, in track lengths",
    "tracks_per_session": "tracks started",
    "sessions": "sessions per user",
    "artists_per_session": "distinct artists",
}
EFFECT_COLUMNS = ("diff", "relative", "rel_low", "rel_high", "p", "p_holm", "significant")
SRM_P = 0.001  # a sample-ratio p-value below this flags the split as broken


@dataclasses.dataclass(frozen=True)
class SimSettings:
    """`--set` keys: the simulator's (envs/music.MusicConfig); a dataclass so --set is typed."""

    sim: dict = dataclasses.field(default_factory=dict)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("env", choices=["music"], help="the simulator")
    p.add_argument("arms", nargs="+", help="the first is the control")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="population seed of the users (default 0)")
    p.add_argument("--salt", default="tunelab", help="salt of the assignment hash")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="simulator setting, e.g. artist_decay=1.0"
    )
    p.add_argument(
        "--log-users", type=int, default=music.LOG_USERS, help="users in the logs toppop, i2i and greedy learn from"
    )
    p.add_argument("--log-seed", type=int, default=music.LOG_SEED, help="population seed of those logs")
    p.add_argument("--log", action="store_true", help="also write every session as sessions.parquet")
    p.add_argument("--name", help="default: ab-music-TIMESTAMP")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    return p


def assign(users: np.ndarray, arms: int, salt: str) -> np.ndarray:
    """Arm index of every user: sha256(salt:user) mod arms."""
    digest = [int.from_bytes(hashlib.sha256(f"{salt}:{u}".encode()).digest()[:8], "big") for u in users]
    return np.array(digest, dtype=np.uint64) % np.uint64(arms)


def sim_config(assignments: list[str]) -> music.MusicConfig:
    values = apply_assignments({}, [parse_assignment(SimSettings, f"sim.{a}", "ab") for a in assignments])
    try:
        return music.parse(values.get("sim", {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"--set: {err}") from None


def build_arm(spec: str, cfg: music.MusicConfig, log_users: int, log_seed: int):
    """The recommender an ARM text names; ConfigError naming the problem otherwise."""
    base = spec.split("#", 1)[0]
    if base.startswith("http://") or base.startswith("https://"):
        try:
            return music_arms.Remote(base)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if base.startswith("embed:"):
        where = model_file(base[len("embed:") :])
        arm = music_arms.Embedding.load(where)
        if len(arm.bias) != cfg.tracks:
            raise ConfigError(
                f"{spec}: trained on {len(arm.bias)} tracks, this A/B's catalogue has {cfg.tracks}; "
                "--set the simulator the model was trained with"
            )
        return arm if arm.populations else dataclasses.replace(arm, populations=trial_populations(spec, where))
    if base.startswith("policy:"):
        arm = load_policy(base[len("policy:") :], cfg)
        known = arm.known
        if (known.log_seed, known.log_users) != (log_seed, log_users):
            raise ConfigError(
                f"{spec}: its features were learned from {known.log_users} logged users of population "
                f"{known.log_seed}; pass --log-seed {known.log_seed} --log-users {known.log_users} so that "
                "greedy sees the same observation"
            )
        return arm
    if base in music_arms.LOGGED:
        return music_arms.heuristic(base, music.logged(cfg, log_seed, log_users))
    if base in music_arms.HEURISTICS:
        return music_arms.heuristic(base)
    raise ConfigError(
        f"unknown arm {spec!r}; choose from {', '.join(music_arms.HEURISTICS)}, embed:PATH or http://HOST:PORT/PATH"
    )


def trial_populations(spec: str, where: Path) -> dict[str, int]:
    """The populations a model.npz written before they were recorded in it was trained and selected
    on: its trial's config (TRIAL/checkpoint_*/model.npz, TRIAL/params.json)."""
    from trainables.music.embedding import MusicEmbedConfig

    params = where.parent.parent / "params.json"
    if not params.exists():
        raise ConfigError(f"{spec}: {where.name} records no training population and no trial config is beside it; "
                          "retrain it (python -m platform.tune music)")  # fmt: skip
    config = {**dataclasses.asdict(MusicEmbedConfig()), **json.loads(params.read_text())}
    if config.get("log"):
        raise ConfigError(f"{spec}: trained on the log {config['log']}, whose population is not recorded; retrain it")
    return {"log": int(config["log_seed"]), "valid": int(config["valid_seed"])}


LEARNED = ("embed:", "policy:")  # arm kinds that learned from simulated users: greedy stands beside them
GREEDY = "greedy"


def check_populations(arms: dict, seed: int) -> None:
    """ConfigError if any arm learned from, or was selected on, the A/B's own population `seed`:
    its test users would not be new to it."""
    for spec, arm in arms.items():
        used = getattr(arm, "populations", {})
        for role, population in used.items():
            if population == seed:
                raise ConfigError(
                    f"arm {spec} was trained on population {seed} ({role}), the A/B's own (--seed {seed}); "
                    "retrain it on another population seed or run the A/B with another --seed"
                )


def with_greedy(specs: list[str]) -> list[str]:
    """The arms, with greedy added after them when a learned arm is among them and greedy is not."""
    learned = any(spec.split("#", 1)[0].startswith(LEARNED) for spec in specs)
    if learned and not any(spec.split("#", 1)[0] == GREEDY for spec in specs):
        return [*specs, GREEDY]
    return list(specs)


def versus_greedy(result: dict, alpha: float) -> dict:
    """Each learned arm against greedy on the primary metric (Welch, Bonferroni over the learned arms)."""
    names = list(result["outcomes"])
    learned = [n for n in names if n.split("#", 1)[0].startswith(LEARNED)]
    greedy = next((n for n in names if n.split("#", 1)[0] == GREEDY), None)
    if not learned or greedy is None:
        return {}

    def primary(name: str) -> np.ndarray:
        outcome = result["outcomes"][name]
        return per_user(outcome, np.unique(outcome.user))[PRIMARY]

    level = alpha / len(learned)
    out = {}
    for name in learned:
        test = welch(primary(name), primary(greedy), level)
        out[name] = {**test, "against": greedy, "win": bool(test["low"] > 0)}
    return out


def model_file(path: str) -> Path:
    """A model.npz, or the last checkpoint's of the best trial (by last validation score) of a
    `music` experiment folder."""
    from trainables.music.embedding import MODEL_FILE

    where = Path(path).expanduser()
    if where.is_file():
        return where
    if not where.is_dir():
        raise ConfigError(f"embed:{path}: no such file or folder; name a `music` experiment folder or a {MODEL_FILE}")
    try:
        trial = recorded.best_checkpointed(str(where))
    except FileNotFoundError as err:
        raise ConfigError(f"embed:{path}: {err}; name a `music` experiment folder or a {MODEL_FILE}") from None
    return sorted(Path(trial.path).glob(f"checkpoint_*/{MODEL_FILE}"))[-1]


def load_policy(path: str, cfg: music.MusicConfig):
    """The `policy:PATH` arm: an RL model trained on the music env, restored from its last checkpoint.
    PATH is an experiment folder (its best trial by validation score) or one trial's folder."""
    import search_spaces

    folder = Path(path).expanduser()
    single = (folder / "params.json").exists()
    lineage = (folder.parent if single else folder) / "lineage.json"
    if not lineage.exists():
        raise ConfigError(f"policy:{path}: no tunelab experiment there (lineage.json); name its folder or a trial's")
    model = json.loads(lineage.read_text())["model"]
    spec = search_spaces.get(model)
    try:
        if single:
            trial = next(t for t in recorded.load(str(folder.parent)).trials if t.name == folder.name)
        else:
            trial = recorded.best_checkpointed(str(folder))
    except (FileNotFoundError, StopIteration) as err:
        raise ConfigError(f"policy:{path}: {err or 'Tune recorded no such trial'}") from None
    config = trial.config
    if config.get("env") != envs.MUSIC:
        raise ConfigError(f"policy:{path}: {model} was trained on {config.get('env')!r}, not {envs.MUSIC}")
    keys, sim = music.split_config(config.get("env_config", {}))
    if cfg != sim:
        trained = config.get("env_config")
        raise ConfigError(f"policy:{path}: trained on the simulator {trained}; --set the same settings")
    if "num_env_runners" in config:  # an RLlib model: its algorithm needs a Ray to build in
        import ray

        if not ray.is_initialized():
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    return music_arms.Policy.load(spec.trainable, config, trial.checkpoints[-1])


def per_user(outcome: music.Outcome, users: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric per user of `users` (every user has at least one session)."""
    index = np.searchsorted(users, outcome.user)
    sessions = np.bincount(index, minlength=len(users)).astype(float)
    mean = lambda x: np.bincount(index, x, len(users)) / sessions  # noqa: E731
    return {
        "time_per_session": mean(outcome.time),
        "tracks_per_session": mean(outcome.tracks.astype(float)),
        "sessions": sessions,
        "artists_per_session": mean(outcome.artists.astype(float)),
    }


def welch(treatment: np.ndarray, control: np.ndarray, alpha: float) -> dict:
    """Difference of means with a Welch interval at `alpha`, its p-value, and both relative to the
    control's mean (the control mean taken as known: the interval of a ratio is wider by its own
    noise, small at these sample sizes)."""
    mt, mc = treatment.mean(), control.mean()
    vt, vc = treatment.var(ddof=1) / len(treatment), control.var(ddof=1) / len(control)
    diff, se = mt - mc, math.sqrt(vt + vc)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "p": 1.0 if diff == 0 else 0.0,
                "relative": diff / mc if mc else math.nan, "rel_low": math.nan, "rel_high": math.nan}  # fmt: skip
    df = (vt + vc) ** 2 / (vt**2 / (len(treatment) - 1) + vc**2 / (len(control) - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    p = 2 * stats.t.sf(abs(diff) / se, df)
    scale = mc if mc else math.nan
    return {"diff": diff, "low": diff - half, "high": diff + half, "p": p, "relative": diff / scale,
            "rel_low": (diff - half) / scale, "rel_high": (diff + half) / scale}  # fmt: skip


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values."""
    order = np.argsort(pvalues)
    adjusted, running = np.empty(len(pvalues)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def run_ab(cfg: music.MusicConfig, arms: dict, users: int, seed: int, salt: str, alpha: float) -> dict:
    """The A/B itself: {"arms": per-arm figures, "effects": per treatment and metric, "srm": ...,
    "outcomes": per-arm music.Outcome}."""
    ids = np.arange(users)
    groups = assign(ids, len(arms), salt)
    names = list(arms)
    outcomes, figures, per = {}, {}, {}
    for i, name in enumerate(names):
        mine = ids[groups == i]
        if not len(mine):
            raise ConfigError(f"arm {name} got no users; use more --users")
        tick = time.perf_counter()
        outcomes[name] = music.simulate(cfg, arms[name], seed, mine)
        per[name] = per_user(outcomes[name], mine)
        played = np.unique(np.concatenate(outcomes[name].played))
        figures[name] = {
            "users": len(mine),
            **{k: float(v.mean()) for k, v in per[name].items()},
            "coverage": len(played) / music.catalogue_of(cfg).size,
            "seconds": time.perf_counter() - tick,
        }
    counts = np.array([figures[n]["users"] for n in names])
    srm = stats.chisquare(counts).pvalue if len(names) > 1 else 1.0
    treatments = names[1:]
    level = alpha / max(1, len(treatments))  # Bonferroni: every interval at alpha / treatments
    effects = {t: {} for t in treatments}
    for metric in METRICS:
        tests = [welch(per[t][metric], per[names[0]][metric], level) for t in treatments]
        for t, test, adjusted in zip(treatments, tests, holm([x["p"] for x in tests]) if tests else []):
            # "significant" agrees with the interval shown: Bonferroni (Holm's p, more powerful, is beside)
            effects[t][metric] = {**test, "p_holm": adjusted, "significant": not test["low"] <= 0 <= test["high"]}
    return {"arms": figures, "effects": effects, "srm_p": float(srm), "outcomes": outcomes, "alpha": alpha}


def table(result: dict) -> str:
    names = list(result["arms"])
    head = ["arm", "users"] + list(METRICS) + ["coverage"]
    rows = []
    for name in names:
        a = result["arms"][name]
        rows.append([music_arms.label(name), a["users"], *(f"{a[k]:.3f}" for k in METRICS), f"{a['coverage']:.3f}"])
    lines = tables.table(head, rows)
    lines += [
        "",
        f"Against {names[0]} (relative effect [Bonferroni {1 - result['alpha']:.0%} interval], Holm p; "
        "* the interval excludes 0):",
    ]
    for t, by_metric in result["effects"].items():
        cells = []
        for metric, e in by_metric.items():
            mark = " *" if e["significant"] else ""
            cells.append(
                f"{metric} {e['relative']:+.1%} [{e['rel_low']:+.1%}, {e['rel_high']:+.1%}] p={e['p_holm']:.3g}{mark}"
            )
        lines.append(f"  {music_arms.label(t)}: " + "; ".join(cells))
    if result.get("versus_greedy"):
        level = f"Bonferroni {1 - result['alpha']:.0%} interval"
        lines += ["", f"Learned arms against greedy (the one-step policy over the same observation), {PRIMARY} "
                  f"[{level}]; a win only where the interval lies above 0:"]  # fmt: skip
        for name, e in result["versus_greedy"].items():
            verdict = "beats greedy" if e["win"] else ("loses to greedy" if e["high"] < 0 else "no better than greedy")
            lines.append(f"  {name}: {e['relative']:+.1%} [{e['rel_low']:+.1%}, {e['rel_high']:+.1%}]: {verdict}")
    ok = result["srm_p"] >= SRM_P
    lines.append(
        f"Sample ratio: p={result['srm_p']:.3g} " + ("(ok)" if ok else "SAMPLE RATIO MISMATCH: the split is broken")
    )
    return "\n".join(lines)


def arm_label(spec: str) -> str:
    """An arm's name for a figure: a trained model's arm by its folder's name, never the path of the
    machine it was read from (embed:/tmp/.../music-pbt/model.npz -> embed:music-pbt/model.npz)."""
    kind, sep, where = spec.partition(":")
    if not sep or kind not in ("embed", "policy"):
        return music_arms.label(spec)
    tag = ""
    if "#" in where:
        where, tag = where.rsplit("#", 1)
        tag = "#" + tag
    path = Path(where.rstrip("/"))
    return f"{kind}:{'/'.join(path.parts[-2:]) if path.suffix else path.name}{tag}"


def write(result: dict, folder: Path, log: bool) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(result["arms"])
    with open(folder / "ab.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "metric", "mean", "users", *EFFECT_COLUMNS])
        for name in names:
            for metric in METRICS + ("coverage",):
                e = result["effects"].get(name, {}).get(metric, {})
                figures = result["arms"][name]
                effect = [e.get(k, "") for k in EFFECT_COLUMNS]
                w.writerow([name, metric, figures[metric], figures["users"], *effect])
    keep = {k: v for k, v in result.items() if k != "outcomes"}
    (folder / "ab.json").write_text(json.dumps(keep, indent=1, default=float))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], METRICS):
        treatments = list(result["effects"])
        effects = [result["effects"][t][metric] for t in treatments]
        rel = [100 * e["relative"] for e in effects]
        below = [100 * (e["relative"] - e["rel_low"]) for e in effects]
        err = [below, [100 * (e["rel_high"] - e["relative"]) for e in effects]]
        ax.bar([arm_label(t) for t in treatments], rel, yerr=err, capsize=4, color="tab:blue")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{metric} ({UNITS[metric]})", fontsize=9)
        ax.set_ylabel(f"% vs {arm_label(names[0])}")
        # anchored at their right end, long names (sticky-fallback) do not run into the next one
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    counts = [a["users"] for a in result["arms"].values()]
    level = f"Bonferroni {1 - result['alpha']:.0%} Welch intervals over {len(result['effects'])} treatment(s)"
    note = tables.caption(f"relative effect on each user-level metric vs the control {arm_label(names[0])}, %",
                          f"{sum(counts):,} users, {min(counts):,} to {max(counts):,} per arm", level)  # fmt: skip
    (folder / "ab.png").write_bytes(tables.png(fig, note, dpi=110))
    plt.close(fig)
    if log:
        import pandas as pd

        frames = [pd.DataFrame(music.log_rows(o, name)) for name, o in result["outcomes"].items()]
        pd.concat(frames).to_parquet(folder / "sessions.parquet", index=False)


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    name = args.name or f"ab-music-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.storage).expanduser() / name
    try:
        if args.users < 2 * len(args.arms):
            raise ConfigError(f"--users {args.users}: at least 2 per arm ({2 * len(args.arms)})")
        if not 0 < args.alpha < 1:
            raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha}")
        if len(set(args.arms)) < len(args.arms):
            raise ConfigError("an arm is named twice; give the copy a tag (ARM#b) for an A/A test")
        if (folder / "ab.json").exists():
            raise ConfigError(f"A/B {name!r} already exists at {folder}; pass a new --name (nothing was changed)")
        cfg = sim_config(args.set)
        if args.log_seed == args.seed and any(s.split("#", 1)[0] in music_arms.LOGGED for s in with_greedy(args.arms)):
            raise ConfigError(f"--log-seed {args.log_seed} is the A/B's population (--seed): arms would learn from "
                              "their test users; pick another --log-seed")  # fmt: skip
        specs = with_greedy(args.arms)
        arms = {spec: build_arm(spec, cfg, args.log_users, args.log_seed) for spec in specs}
        check_populations(arms, args.seed)
        result = run_ab(cfg, arms, args.users, args.seed, args.salt, args.alpha)
        result["versus_greedy"] = versus_greedy(result, args.alpha)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:  # an HTTP arm that does not answer, a file that cannot be read
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"A/B in the music simulator: {args.users} users of population {args.seed}, salt {args.salt!r}")
    print(table(result))
    write(result, folder, args.log)
    print(f"Written: {folder / 'ab.csv'}, ab.json, ab.png" + (", sessions.parquet" if args.log else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run())
