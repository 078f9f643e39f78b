"""`python -m platform.ab music ARM [ARM ...] --users N`: an A/B test of recommenders in the music
session simulator (envs/music.py). The first arm is the control.

    python -m platform.ab music random sticky embed:~/ray_results/music-pbt-... oracle --users 10000
    python -m platform.ab music random sticky --design paired --cuped --mde 0.05   # paired, CUPED, power
    python -m platform.ab music random random#b --users 10000           # an A/A test
    python -m platform.ab music sticky http://localhost:5000            # a service as an arm (platform.serve)
    python -m platform.ab --replay ~/ray_results/ab-music-.../ab.json   # rerun a recorded A/B

Arms (each sees only what a service could: the session so far, and what it learned from the
logged sessions of --log-users users of population --log-seed; only the oracle reads the truth):
  random, sticky, sticky-fallback   heuristics (random#TAG draws its own random stream: a paired A/A
                       needs two)
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
  http://HOST:PORT     a recommender service speaking the course's protocol (POST /next/<user> and
                       /last/<user> with {"track", "time"}; python -m platform.serve serves any arm so);
                       a user whose requests fail (--http-*) is left out and counted as failed; refused
                       when its GET / reports a seed other than --seed, or populations including it
  ARM#TAG              the same arm again under another name (A/A tests)

Designs. split (the default, as a real A/B): users 0..N-1 of population --seed are divided between
the arms by a salted hash of the user id. paired: every user runs through every arm; every draw of
the simulator is a hash of (seed, user, session, step), so a user's interests, session starts and
patience coins are the same in every arm (common random numbers) and the unit is the user's
difference, whose variance is measured against the split design's at the same users per arm.

Per user: listening time per session (the primary metric), tracks per session, sessions, distinct
artists per session (secondary); per arm also catalogue coverage. Each treatment against the
control: the relative lift with a delta-method interval (Welch, or paired t), Bonferroni within each
family (primary: over the treatments; secondary: over treatments x metrics), Holm-adjusted p-values
beside, the minimum detectable lift at --power (with --mde, the users that lift needs), and a
sample-ratio check of the split. Each learned arm (embed:, policy:) is also compared with greedy; a
learned arm trained or selected on the A/B's own population is refused. --cuped adjusts by each
user's pre-experiment sessions (the control serving them before the test, an independent stream).
--looks K analyses the primary metric at K growing user counts with mSPRT's always-valid p-values
and warns that fixed-horizon figures hold at the last look only. Written to STORAGE/NAME: ab.csv,
ab.json (figures, settings, commit: what --replay reruns), ab.png (and sessions.parquet with --log).
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
from platform import ab_stats, tables
from platform import results as recorded
from trainables.config import ConfigError, apply_assignments, parse_assignment
from trainables.music import arms as music_arms
from trainables.music.http_arm import HttpArm, HttpSettings

METRICS = ("time_per_session", "tracks_per_session", "sessions", "artists_per_session")
PRIMARY = METRICS[0]
UNITS = {  # per user, each a mean over the user's sessions but `sessions`
    "time_per_session": "tracks listened, in track lengths",
    "tracks_per_session": "tracks started",
    "sessions": "sessions per user",
    "artists_per_session": "distinct artists",
}
SECONDARY = METRICS[1:]
EFFECT_COLUMNS = ("family", "diff", "relative", "rel_low", "rel_high", "p", "p_adj", "significant", "pairing", "cuped")
PRE_SESSION = 1_000  # pre-experiment sessions are numbered from here: an independent stream of the same users
MSPRT_TAU = 0.1  # mSPRT's mixing scale, relative to the control's mean: effects of about 10% are tested best
SRM_P = 0.001  # a sample-ratio p-value below this flags the split as broken


@dataclasses.dataclass(frozen=True)
class SimSettings:
    """`--set` keys: the simulator's (envs/music.MusicConfig); a dataclass so --set is typed."""

    sim: dict = dataclasses.field(default_factory=dict)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("env", nargs="?", choices=["music"], help="the simulator")
    p.add_argument("arms", nargs="*", help="the first is the control")
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
    http = HttpSettings()
    p.add_argument("--http-concurrency", type=int, default=http.concurrency, help="an HTTP arm's requests in flight")
    p.add_argument("--http-timeout", type=float, default=http.timeout, help="seconds an HTTP arm waits for an answer")
    p.add_argument("--http-retries", type=int, default=http.retries, help="an HTTP arm's retries of a failed request")
    p.add_argument("--name", help="default: ab-music-TIMESTAMP")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    p.add_argument("--design", choices=ab_stats.DESIGNS, default=ab_stats.SPLIT,
                   help="split: each user in one arm (default); paired: every user in every arm")  # fmt: skip
    p.add_argument("--cuped", action="store_true", help="adjust by each user's pre-experiment sessions")
    p.add_argument("--mde", type=float, help="a relative lift (0.02 = +2%%): print the users it needs")
    p.add_argument("--power", type=float, default=0.8, help="power of the --mde and detectable-lift figures")
    p.add_argument("--looks", type=int, default=1, help="interim looks analysed with mSPRT (default 1: none)")
    p.add_argument("--replay", metavar="AB_JSON", help="rerun the A/B an ab.json records and compare its figures")
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


def build_arm(spec: str, cfg: music.MusicConfig, log_users: int, log_seed: int, http: HttpSettings | None = None):
    """The recommender an ARM text names; ConfigError naming the problem otherwise."""
    base = spec.split("#", 1)[0]
    if base.startswith("http://") or base.startswith("https://"):
        return HttpArm(base, http or HttpSettings())
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
    if base == "random" and "#" in spec:  # a tagged copy draws its own stream (a paired A/A)
        return music_arms.Random(stream=1 + int(hashlib.sha256(spec.encode()).hexdigest()[:8], 16))
    if base in music_arms.HEURISTICS:
        return music_arms.heuristic(base)
    raise ConfigError(
        f"unknown arm {spec!r}; choose from {', '.join(music_arms.HEURISTICS)}, embed:PATH, policy:PATH or http://HOST:PORT"
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
    its test users would not be new to it. A served arm is checked by what its service reports (GET
    /): a service started for another population (its --seed) is refused too, since it refuses
    arms trained on that population, not on this one."""
    for spec, arm in arms.items():
        if isinstance(arm, HttpArm):
            served_seed = arm.status.get("seed", seed)  # a service that reports none is not checked
            if served_seed != seed:
                raise ConfigError(
                    f"arm {spec}: the service reports seed {served_seed!r}, the A/B tests population {seed} "
                    f"(--seed); restart it with --seed {seed} or run the A/B with --seed {served_seed}"
                )
        used = getattr(arm, "populations", {})
        if not isinstance(used, dict) or not all(isinstance(p, (int, np.integer)) for p in used.values()):
            raise ConfigError(f"arm {spec}: populations {used!r} are not {{role: population seed}}")
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
    """Each learned arm against greedy on the primary metric (Welch, or paired t in the paired design;
    Bonferroni over the learned arms)."""
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
        test = ab_stats.compare(ab_stats.Sample(primary(name), primary(greedy)), level, result["design"])
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


def only_users(outcome: music.Outcome, users: np.ndarray) -> music.Outcome:
    """The sessions of `users` only."""
    keep = np.isin(outcome.user, users)
    rows = np.flatnonzero(keep)
    return dataclasses.replace(
        outcome, user=outcome.user[keep], session=outcome.session[keep], tracks=outcome.tracks[keep],
        time=outcome.time[keep], artists=outcome.artists[keep], played=[outcome.played[i] for i in rows],
        listened=[outcome.listened[i] for i in rows],
    )  # fmt: skip


def levels(alpha: float, treatments: int) -> dict[str, float]:
    """The alpha of every interval in each family: the primary metric Bonferroni over the treatments,
    the secondary metrics Bonferroni over treatments x secondary metrics (each family keeps its
    family-wise error at alpha)."""
    return {"primary": alpha / max(1, treatments), "secondary": alpha / max(1, treatments * len(SECONDARY))}


def run_ab(
    cfg: music.MusicConfig,
    arms: dict,
    users: int,
    seed: int,
    salt: str,
    alpha: float,
    design: str = ab_stats.SPLIT,
    cuped: bool = False,
    looks: int = 1,
) -> dict:
    """The A/B itself: {"arms": per-arm figures, "effects": per treatment and metric, "srm_p", "alpha",
    "design", "outcomes": per-arm music.Outcome}. Split: users 0..users-1 divided by the salted hash;
    paired: every user in every arm. `cuped`: adjust by each user's pre-experiment sessions (the
    control arm serving sessions numbered from PRE_SESSION). `looks` > 1: the primary metric is also
    analysed at that many growing prefixes of the users with mSPRT (see sequential())."""
    ids = np.arange(users)
    names = list(arms)
    if design == ab_stats.PAIRED:
        members = {name: ids for name in names}
    else:
        groups = assign(ids, len(arms), salt)
        members = {name: ids[groups == i] for i, name in enumerate(names)}
    outcomes, figures, per = {}, {}, {}
    for name in names:
        mine = members[name]
        if not len(mine):
            raise ConfigError(f"arm {name} got no users; use more --users")
        tick = time.perf_counter()
        remote = isinstance(arms[name], HttpArm)
        outcomes[name] = music.simulate(cfg, arms[name], seed, mine, on_end=arms[name].end if remote else None)
        failed = np.array(sorted(arms[name].failed) if remote else [], np.int64)
        if len(failed):  # users whose requests failed: out of the analysis, counted (the sample-ratio check sees them)
            if design == ab_stats.PAIRED:
                first = next(iter(arms[name].failed.values()))
                raise RuntimeError(f"arm {name}: {len(failed)} users' requests failed; the paired design needs "
                                   f"every user in every arm; the first: {first}")  # fmt: skip
            mine = members[name] = np.setdiff1d(mine, failed)
            outcomes[name] = only_users(outcomes[name], mine)
        if not len(mine):
            first = next(iter(arms[name].failed.values()))
            raise RuntimeError(f"arm {name}: every user's requests failed; the first: {first}")
        per[name] = per_user(outcomes[name], mine)
        played = np.unique(np.concatenate(outcomes[name].played))
        figures[name] = {
            "users": len(mine),
            "failed_users": len(failed),
            "first_failure": next(iter(arms[name].failed.values())) if len(failed) else "",
            **{k: float(v.mean()) for k, v in per[name].items()},
            "coverage": len(played) / music.catalogue_of(cfg).size,
            "seconds": time.perf_counter() - tick,
        }
    pre = per_user(music.simulate(cfg, arms[names[0]], seed, ids, first_session=PRE_SESSION), ids) if cuped else None
    counts = np.array([figures[n]["users"] for n in names])
    srm = stats.chisquare(counts).pvalue if len(names) > 1 and design == ab_stats.SPLIT else 1.0
    treatments = names[1:]
    level = levels(alpha, len(treatments))
    effects = {t: {} for t in treatments}
    for family, metrics in (("primary", (PRIMARY,)), ("secondary", SECONDARY)):
        tests = {}
        for t in treatments:
            for metric in metrics:
                tests[t, metric] = ab_stats.compare(
                    sample(per, pre, members, t, names[0], metric), level[family], design
                )
        adjusted = ab_stats.holm([x["p"] for x in tests.values()]) if tests else []
        for (t, metric), test, p_adj in zip(tests, tests.values(), adjusted):
            # "significant" agrees with the interval shown (Bonferroni); Holm's p, more powerful, is beside
            significant = not test["low"] <= 0 <= test["high"]
            effects[t][metric] = {**test, "family": family, "level": level[family], "p_adj": p_adj,
                                  "significant": significant}  # fmt: skip
    if looks > 1:
        for t in treatments:
            effects[t][PRIMARY]["looks"] = sequential(per, pre, members, t, names[0], design, looks, level["primary"])
    result = {"arms": figures, "effects": effects, "srm_p": float(srm), "alpha": alpha, "design": design}
    return {**result, "cuped": cuped, "looks": looks, "outcomes": outcomes}


def aa_runs(design: str, runs: int, users: int, alpha: float = 0.05, looks: int = 1, cuped: bool = False) -> dict:
    """A/A calibration in-process: `runs` A/A tests of two random arms with independent streams, each
    on a fresh population and salt. Per metric the count of significant differences; "any secondary"
    counts runs with at least one; with `looks`, how often stopping at the first look whose
    fixed-horizon p (naive) or mSPRT p (sequential) fell below alpha would have claimed a difference;
    the primary metric's difference estimate of every run (its spread is the design's variance), and
    of every run the primary metric's `pairing` and, with `cuped`, `cuped` variance ratio as the A/B
    reports them (ab_stats.compare; NaN where the run has none)."""
    cfg = music.MusicConfig()
    arms = {"a": music_arms.Random(), "b": music_arms.Random(stream=1)}
    counts = {m: 0 for m in (*METRICS, "any secondary", "naive peeking", "mSPRT")}
    diffs, pairing, reduction = [], [], []
    for run in range(runs):
        result = run_ab(cfg, arms, users, 10_000 + run, f"aa{run}", alpha, design, cuped, looks)
        effects = result["effects"]["b"]
        for metric in METRICS:
            counts[metric] += effects[metric]["significant"]
        counts["any secondary"] += any(effects[m]["significant"] for m in SECONDARY)
        if looks > 1:
            counts["naive peeking"] += effects[PRIMARY]["looks"]["naive_stop"] is not None
            counts["mSPRT"] += effects[PRIMARY]["looks"]["stopped"] is not None
        diffs.append(effects[PRIMARY]["diff"])
        pairing.append(effects[PRIMARY].get("pairing", math.nan))
        reduction.append(effects[PRIMARY].get("cuped", math.nan))
    return {"runs": runs, "users": users, "counts": counts, "diffs": np.array(diffs), "pairing": np.array(pairing),
            "cuped": np.array(reduction)}  # fmt: skip


def sample(per: dict, pre: dict | None, members: dict, t: str, c: str, metric: str, upto=None) -> ab_stats.Sample:
    """One comparison's per-user values (users below `upto` only, for an interim look)."""
    keep_t = slice(None) if upto is None else members[t] < upto
    keep_c = slice(None) if upto is None else members[c] < upto
    pre_t = pre_c = None
    if pre is not None:
        pre_t, pre_c = pre[metric][members[t][keep_t]], pre[metric][members[c][keep_c]]
    return ab_stats.Sample(per[t][metric][keep_t], per[c][metric][keep_c], pre_t, pre_c)


def sequential(per, pre, members, t: str, c: str, design: str, looks: int, alpha: float) -> dict:
    """The primary metric at `looks` evenly spaced user counts (a user's outcome does not depend on
    who else is in the test, so a prefix is what an interim analysis would have seen): the
    fixed-horizon p at each look (not valid for stopping) and mSPRT's always-valid p (the running
    minimum of 1 / the mixture likelihood ratio, mixing over N(0, tau^2), tau = MSPRT_TAU x the
    control's mean at the first look). `stopped` is the first look whose always-valid p is below
    alpha, or None; `low`/`high` the confidence sequence at the last look."""
    users = max(int(m.max()) for m in members.values()) + 1
    rows, always, tau = [], 1.0, None
    for j in range(1, looks + 1):
        upto = math.ceil(users * j / looks)
        test = ab_stats.compare(sample(per, pre, members, t, c, PRIMARY, upto), alpha, design)
        tau = tau or MSPRT_TAU * abs(test["control_mean"])
        always = min(always, 1 / ab_stats.msprt(test["diff"], test["se"] ** 2, tau))
        rows.append({"users": upto, "diff": test["diff"], "p_fixed": test["p"], "p_always": always})
    low, high = ab_stats.confidence_sequence(test["diff"], test["se"] ** 2, tau, alpha)
    stopped = next((j for j, row in enumerate(rows, 1) if row["p_always"] <= alpha), None)
    peeked = next((j for j, row in enumerate(rows, 1) if row["p_fixed"] <= alpha), None)
    return {"tau": tau, "rows": rows, "stopped": stopped, "naive_stop": peeked, "low": low, "high": high}


def table(result: dict, power: float = 0.8, lift: float | None = None) -> str:
    names = list(result["arms"])
    design = result["design"]
    head = ["arm", "users"] + list(METRICS) + ["coverage"]
    rows = []
    for name in names:
        a = result["arms"][name]
        rows.append([music_arms.label(name), a["users"], *(f"{a[k]:.3f}" for k in METRICS), f"{a['coverage']:.3f}"])
    lines = tables.table(head, rows)
    level = levels(result["alpha"], len(result["effects"]))
    how = "paired t over users" if design == ab_stats.PAIRED else "Welch"
    lines += [
        "",
        f"Against {names[0]}, {design} design ({how}; relative lift [delta-method interval]"
        + (", CUPED on each user's pre-experiment sessions" if result["cuped"] else "")
        + "; * the interval excludes 0):",
        f"  primary metric {PRIMARY}: {1 - result['alpha']:.0%} family-wise, Bonferroni over "
        f"{len(result['effects'])} treatment(s) ({1 - level['primary']:.2%} intervals), Holm p",
    ]
    for t, by_metric in result["effects"].items():
        lines.append(f"    {music_arms.label(t)}: {effect_text(by_metric[PRIMARY])}")
    lines.append(
        f"  secondary metrics (a family of their own: Bonferroni over {len(result['effects'])} x {len(SECONDARY)} "
        f"comparisons, {1 - level['secondary']:.2%} intervals, Holm p within the family):"
    )
    for t, by_metric in result["effects"].items():
        lines.append(f"    {music_arms.label(t)}: " + "; ".join(f"{m} {effect_text(by_metric[m])}" for m in SECONDARY))
    if result.get("versus_greedy"):
        lines += ["", f"Learned arms against greedy (the one-step policy over the same observation), {PRIMARY} "
                  f"[Bonferroni {1 - result['alpha']:.0%} delta-method interval]; a win only above 0:"]  # fmt: skip
        for name, e in result["versus_greedy"].items():
            verdict = "beats greedy" if e["win"] else ("loses to greedy" if e["high"] < 0 else "no better than greedy")
            lines.append(f"  {name}: {e['relative']:+.1%} [{e['rel_low']:+.1%}, {e['rel_high']:+.1%}]: {verdict}")
    lines += power_lines(result, power, lift)
    for t, by_metric in result["effects"].items():
        seq = by_metric[PRIMARY].get("looks")
        if seq:
            lines.append(looks_text(t, seq, result["looks"], level["primary"]))
    if result["looks"] > 1:
        lines.append(
            f"WARNING: {result['looks']} interim looks: the fixed-horizon p-values and intervals above hold for "
            "the last look only; a decision at an interim look must use the always-valid mSPRT p."
        )
    if design == ab_stats.SPLIT:
        ok = result["srm_p"] >= SRM_P
        lines.append(
            f"Sample ratio: p={result['srm_p']:.3g} " + ("(ok)" if ok else "SAMPLE RATIO MISMATCH: the split is broken")
        )
    for name in names:
        if result["arms"][name].get("failed_users"):
            first = result["arms"][name]["first_failure"]
            lines.append(f"{name}: {result['arms'][name]['failed_users']} users failed, left out; the first: {first}")
    return "\n".join(lines)


def effect_text(e: dict) -> str:
    text = f"{e['relative']:+.1%} [{e['rel_low']:+.1%}, {e['rel_high']:+.1%}] p={e['p_adj']:.3g}"
    text += " *" if e["significant"] else ""
    if "pairing" in e and math.isnan(e["pairing"]):  # var(t - c) = 0: the arms agree on every user
        text += " (identical on every user: the paired difference has no variance)"
    elif "pairing" in e:
        text += f" (variance {e['pairing']:.2f}x smaller than split)"
    if "cuped" in e:
        text += f" (CUPED: variance {e['cuped']:.2f}x smaller)"
    return text


def power_lines(result: dict, power: float, lift: float | None) -> list[str]:
    """The primary metric's minimum detectable lift at this A/B's users, and with a --mde lift the users
    it needs, at each treatment's measured variance (CUPED-adjusted when on)."""
    alpha = levels(result["alpha"], len(result["effects"]))["primary"]
    paired = result["design"] == ab_stats.PAIRED
    lines = [f"Power ({power:.0%}, primary metric, Bonferroni alpha {alpha:.3g}, at the measured variance):"]
    for t, by_metric in result["effects"].items():
        e = by_metric[PRIMARY]
        per_arm = min(result["arms"][t]["users"], result["arms"][next(iter(result["arms"]))]["users"])
        text = f"    {t}: detectable lift {ab_stats.mde(e['unit_var'], e['control_mean'], per_arm, alpha, power):.2%}"
        text += f" at {per_arm:,} users per arm"
        if lift:
            need = math.ceil(ab_stats.users_needed(e["unit_var"], e["control_mean"], lift, alpha, power))
            total = need if paired else need * len(result["arms"])
            text += f"; a {lift:+.1%} lift needs {need:,} users per arm ({total:,} users in all, {result['design']})"
        lines.append(text)
    return lines


def looks_text(t: str, seq: dict, looks: int, alpha: float) -> str:
    last = seq["rows"][-1]
    stop = f"stops at look {seq['stopped']}" if seq["stopped"] else "does not stop"
    naive = f"look {seq['naive_stop']}" if seq["naive_stop"] else "no look"
    return (
        f"  sequential, {t}: mSPRT (tau {seq['tau']:.3g}) over {looks} looks {stop} at alpha {alpha:.3g}; "
        f"always-valid p {last['p_always']:.3g}, confidence sequence of the difference [{seq['low']:+.4g}, "
        f"{seq['high']:+.4g}] (stopping on the fixed-horizon p would have stopped at {naive})"
    )


def commit() -> str:
    """The commit this code is at (with "+dirty" when the work tree has changes), or "unknown"."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def arm_settings(spec: str, arm, args: argparse.Namespace) -> dict:
    """What rebuilds an arm: its spec and its settings (a trained model's file hash, i2i's log)."""
    base = spec.split("#", 1)[0]
    out = {"spec": spec, "label": arm_label(spec)}
    if dataclasses.is_dataclass(arm):
        fields = {f.name: getattr(arm, f.name) for f in dataclasses.fields(arm)}
        out["settings"] = {k: v for k, v in fields.items() if isinstance(v, (int, float, str, bool))}
    if base in music_arms.LOGGED:
        out["settings"] = {**out.get("settings", {}), "log_users": args.log_users, "log_seed": args.log_seed}
    if base.startswith("embed:"):
        model = model_file(base[len("embed:") :])
        out["settings"] = {"file": str(model), "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    if base.startswith("policy:"):
        out["settings"] = {"checkpoint": arm.checkpoint, "sha256": folder_sha256(Path(arm.checkpoint)),
                           "populations": dict(arm.populations)}  # fmt: skip
    if isinstance(arm, HttpArm):
        out["settings"] = {"served": served(base)}
    return out


def folder_sha256(folder: Path) -> str:
    """One hash over a checkpoint folder's files (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def served(url: str) -> dict:
    """What a platform.serve service says it serves (its arm and population), or why it did not say."""
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=5) as reply:
            status = json.loads(reply.read())
        return {k: status[k] for k in ("arm", "seed") if k in status}
    except (OSError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


def settings(args: argparse.Namespace, arms: dict) -> dict:
    """Everything --replay needs to rerun this A/B."""
    keys = ("users", "seed", "salt", "design", "alpha", "cuped", "looks", "power", "mde", "log_users", "log_seed")
    return {**{k: getattr(args, k) for k in keys}, "set": list(args.set),
            "arms": [arm_settings(spec, arm, args) for spec, arm in arms.items()]}  # fmt: skip


def replay_argv(record: dict) -> list[str]:
    """The command line of a recorded A/B (ab.json's "settings")."""
    s = record["settings"]
    argv = ["music", *(a["spec"] for a in s["arms"])]
    for key in ("users", "seed", "salt", "design", "alpha", "looks", "power", "log_users", "log_seed"):
        argv += [f"--{key.replace('_', '-')}", str(s[key])]
    argv += ["--cuped"] if s["cuped"] else []
    argv += ["--mde", str(s["mde"])] if s["mde"] is not None else []
    for assignment in s["set"]:
        argv += ["--set", assignment]
    return argv


def differences(original: dict, rerun: dict) -> list[str]:
    """The figures of two ab.json records that differ (run times aside)."""
    out = []

    def walk(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key != "seconds":
                    walk(a.get(key), b.get(key), f"{where}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]")
        elif isinstance(a, float) and isinstance(b, float):
            if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
                out.append(f"{where}: {a!r} recorded, {b!r} rerun")
        elif a != b:
            out.append(f"{where}: {a!r} recorded, {b!r} rerun")

    for key in ("arms", "effects", "srm_p"):
        walk(original.get(key), rerun.get(key), key)
    return out


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
    if path.suffix and path.parent.name.startswith("checkpoint_"):  # a trial's model: name the trial
        return f"{kind}:{'/'.join(path.parts[-3:-1])}{tag}"
    return f"{kind}:{'/'.join(path.parts[-2:]) if path.suffix else path.name}{tag}"


def write(result: dict, folder: Path, log: bool, record: dict) -> None:
    """ab.csv (one row per arm and metric), ab.json (the figures beside the settings and commit that
    reproduce them), ab.png (relative lifts with their intervals), sessions.parquet with `log`."""
    import csv

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
    (folder / "ab.json").write_text(json.dumps({**record, **keep}, indent=1, default=float))
    (folder / "ab.png").write_bytes(plot(result))
    if log:
        import pandas as pd

        frames = [pd.DataFrame(music.log_rows(o, name)) for name, o in result["outcomes"].items()]
        pd.concat(frames).to_parquet(folder / "sessions.parquet", index=False)


def plot(result: dict) -> bytes:
    """Relative lift of every treatment on every metric, a point with its interval per arm (arms on
    the vertical axis, so long names stay readable), the primary metric first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, treatments = list(result["arms"]), list(result["effects"])
    level = levels(result["alpha"], len(treatments))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 1.6 + 0.45 * len(treatments)),
                             squeeze=False, sharey=True)  # fmt: skip
    y = np.arange(len(treatments))[::-1]
    for ax, metric in zip(axes[0], METRICS):
        effects = [result["effects"][t][metric] for t in treatments]
        rel = np.array([100 * e["relative"] for e in effects])
        err = [rel - [100 * e["rel_low"] for e in effects], [100 * e["rel_high"] for e in effects] - rel]
        colour = "tab:blue" if metric == PRIMARY else "tab:gray"
        ax.errorbar(rel, y, xerr=err, fmt="o", color=colour, capsize=4)
        ax.axvline(0, color="black", lw=0.8)
        family = "primary" if metric == PRIMARY else "secondary"
        ax.set_title(f"{metric} ({family})\n{UNITS[metric]}", fontsize=9)
        ax.set_xlabel(f"% vs {arm_label(names[0])}", fontsize=8)
        ax.set_yticks(y, [arm_label(t) for t in treatments], fontsize=8)
    counts = [a["users"] for a in result["arms"].values()]
    users = (f"{counts[0]:,} users, each in every arm" if result["design"] == ab_stats.PAIRED
             else f"{sum(counts):,} users split {min(counts):,} to {max(counts):,} per arm")  # fmt: skip
    how = "paired t" if result["design"] == ab_stats.PAIRED else "Welch"
    intervals = (f"{result['design']} design, delta-method intervals ({how}), Bonferroni: primary "
                 f"{1 - level['primary']:.2%}, secondary {1 - level['secondary']:.2%}"
                 + (", CUPED" if result["cuped"] else ""))  # fmt: skip
    note = tables.caption(f"relative lift on each user-level metric vs the control {arm_label(names[0])}, %",
                          users, intervals)  # fmt: skip
    data = tables.png(fig, note, dpi=110)
    plt.close(fig)
    return data


def check(args: argparse.Namespace, folder: Path) -> None:
    """Bad input: one ConfigError naming the problem and the fix."""
    if not args.arms:
        raise ConfigError("name the arms (the first is the control), or --replay an ab.json")
    if args.users < 2 * len(args.arms):
        raise ConfigError(f"--users {args.users}: at least 2 per arm ({2 * len(args.arms)})")
    for flag, value in (("--alpha", args.alpha), ("--power", args.power)):
        if not 0 < value < 1:
            raise ConfigError(f"{flag} must be in (0, 1), got {value}")
    if args.mde is not None and args.mde == 0:
        raise ConfigError("--mde is a relative lift to detect (e.g. 0.02 for +2%), not 0")
    if args.looks < 1:
        raise ConfigError(f"--looks {args.looks}: at least 1 (the final analysis)")
    if len(set(args.arms)) < len(args.arms):
        raise ConfigError("an arm is named twice; give the copy a tag (ARM#b) for an A/A test")
    if (folder / "ab.json").exists():
        raise ConfigError(f"A/B {folder.name!r} already exists at {folder}; pass a new --name (nothing was changed)")


REPLAY_TYPES = {  # ab.json's settings that --replay reads, with the JSON types each may have
    **dict.fromkeys(("users", "seed", "looks", "log_users", "log_seed"), (int,)),
    **dict.fromkeys(("alpha", "power"), (int, float)),
    **dict.fromkeys(("salt", "design"), (str,)),
    "cuped": (bool,),
    "mde": (int, float, type(None)),
    "set": (list,),
    "arms": (list,),
}


def read_record(path: str) -> tuple[dict, list[str]]:
    """An ab.json and the command line it records; ConfigError naming the file and what is wrong with
    it otherwise (a record that cannot be read is one line, never a traceback)."""
    where = Path(path).expanduser()
    fix = "name an ab.json written by python -m platform.ab"
    try:
        record = json.loads(where.read_text())
    except OSError as err:
        raise ConfigError(f"--replay {path}: cannot read it ({err.strerror or err}); {fix}") from None
    except ValueError as err:  # not UTF-8, not JSON
        raise ConfigError(f"--replay {path}: not JSON ({err}); {fix}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"--replay {path}: a JSON {type(record).__name__}, not an object; {fix}")
    s = record.get("settings")
    if not isinstance(s, dict):
        raise ConfigError(f'--replay {path}: no "settings" object (what the A/B was run with); {fix}')
    missing = [k for k in ("commit",) if k not in record] + [f"settings.{k}" for k in REPLAY_TYPES if k not in s]
    if missing:
        raise ConfigError(f"--replay {path}: records no {', '.join(missing)}; {fix}")
    for key, types in REPLAY_TYPES.items():  # bool is an int to Python, not a user count to the A/B
        value = s[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            kinds = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"--replay {path}: settings.{key} is {value!r}, not a {kinds}; {fix}")
    if not all(isinstance(a, dict) and isinstance(a.get("spec"), str) for a in s["arms"]):
        raise ConfigError(f'--replay {path}: settings.arms is not a list of {{"spec": ARM, ...}}; {fix}')
    if not all(isinstance(a, str) for a in s["set"]):
        raise ConfigError(f"--replay {path}: settings.set is not a list of KEY=VALUE texts; {fix}")
    return record, replay_argv(record)


def replay(args: argparse.Namespace) -> int:
    """Reruns the A/B an ab.json records (into a new folder) and compares every figure."""
    try:
        original, argv = read_record(args.replay)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.name or f"{Path(args.replay).resolve().parent.name}-replay-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"Replaying {args.replay} (commit {original['commit']}): python -m platform.ab {' '.join(argv)}")
    code = run([*argv, "--name", name, "--storage", args.storage])
    if code:
        return code
    rerun = json.loads((Path(args.storage).expanduser() / name / "ab.json").read_text())
    for was, now in zip(original["settings"]["arms"], rerun["settings"]["arms"]):
        if was.get("settings") != now.get("settings"):
            print(f"note: arm {was['spec']}: settings {was.get('settings')} recorded, {now.get('settings')} now")
    wrong = differences(original, rerun)
    if wrong:
        print(f"REPLAY DIFFERS in {len(wrong)} figure(s), e.g. " + "; ".join(wrong[:3]))
        return 1
    print(f"Replay: every figure matches {args.replay}")
    return 0


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.replay:
        return replay(args)
    name = args.name or f"ab-music-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.storage).expanduser() / name
    try:
        check(args, folder)
        cfg = sim_config(args.set)
        if args.log_seed == args.seed and any(s.split("#", 1)[0] in music_arms.LOGGED for s in with_greedy(args.arms)):
            raise ConfigError(f"--log-seed {args.log_seed} is the A/B's population (--seed): arms would learn from "
                              "their test users; pick another --log-seed")  # fmt: skip
        specs = with_greedy(args.arms)
        http = HttpSettings(args.http_concurrency, args.http_timeout, args.http_retries)
        arms = {spec: build_arm(spec, cfg, args.log_users, args.log_seed, http) for spec in specs}
        check_populations(arms, args.seed)
        started = commit()  # the code that runs, read before work that may land during a long run
        try:
            result = run_ab(
                cfg, arms, args.users, args.seed, args.salt, args.alpha, args.design, args.cuped, args.looks
            )
        finally:
            for arm in arms.values():
                if isinstance(arm, HttpArm):
                    arm.close()
        result["versus_greedy"] = versus_greedy(result, args.alpha)
        record = {"settings": settings(args, arms), "commit": started, "date": time.strftime("%Y-%m-%d")}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:  # an HTTP arm that does not answer, a file that cannot be read
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"A/B in the music simulator, {args.design} design: {args.users} users of population {args.seed}, "
        f"salt {args.salt!r}, commit {record['commit']}"
    )
    print(table(result, args.power, args.mde))
    write(result, folder, args.log, record)
    print(f"Written: {folder / 'ab.csv'}, ab.json, ab.png" + (", sessions.parquet" if args.log else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run())
