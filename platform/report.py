"""`python -m platform.report EXPERIMENT [EXPERIMENT ...]`: what was run, what mattered, and how it went.

Reads what is on storage (a local path or an s3:// / gs:// URI, through pyarrow's filesystem layer,
the one Tune's storage uses), never a live Ray, and writes report.md, a self-contained report.html
and its PNGs into the experiment folder (or --out), then prints the trials table:

  - lineage: the command, commit (and whether the tree was dirty), package versions, when;
  - trials: the settings that differ between trials, final and best score, iterations, status;
    seeds grouped (mean, std, 95% interval); baselines beside; the test figures of the selected
    trial(s) when the run measured them;
  - learning curves: score (and --metrics) against iterations, a band over the seeds of a config;
  - PBT: the lineage (which trial cloned which, when, from Tune's pbt_global.txt) and the schedule
    each trial followed, per mutated hyperparameter;
  - Optuna: hyperparameter importances (fANOVA and PED-ANOVA) from the trials that ran the full
    budget, so early-stopped trials do not skew them, and slice plots of the top parameters;
  - --diff A B: two experiments' configs side by side and the difference of their final scores
    with a Welch 95% interval.
"""

import argparse
import dataclasses
import json
import math
import sys

import numpy as np
from scipy import stats

from platform import ray_compat, tables
from platform import results as recorded
from platform.results import ITERATION, OPTUNA_DB, Folder, TrialRecord
from platform.selection import TEST_FILE
from platform.summary import confidence_interval
from platform.tables import short_value
from trainables import metrics as m


@dataclasses.dataclass
class Experiment:
    name: str
    path: str
    trials: list[TrialRecord]  # as Tune recorded them (platform.results)
    lineage: dict | None
    pbt_events: list[list]
    tests: list[dict]
    study: object | None  # an optuna Study, read from optuna.db


def load(location: str) -> Experiment:
    """An experiment folder as written by `python -m platform.tune`; raises FileNotFoundError."""
    tune_run = recorded.load(location)
    for trial in tune_run.trials:  # the values a trial reported it trained with, as the tables show them
        final = trial.final
        trial.config.update({k[len(m.HPARAM_PREFIX) :]: v for k, v in final.items() if k.startswith(m.HPARAM_PREFIX)})
    folder = tune_run.folder
    lineage = json.loads(folder.read("lineage.json")) if folder.exists("lineage.json") else None
    events = []
    if folder.exists(ray_compat.PBT_LOG):
        events = ray_compat.pbt_exploits(folder.read(ray_compat.PBT_LOG))
    tests = json.loads(folder.read(TEST_FILE)) if folder.exists(TEST_FILE) else []
    study = None
    if folder.exists(OPTUNA_DB) and folder.local:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{folder.root}/{OPTUNA_DB}"
        study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    return Experiment(tune_run.name, location, tune_run.trials, lineage, events, tests, study)


# ----------------------------------------------------------------------------- analysis


def differing(trials: list[TrialRecord]) -> list[str]:
    """Config keys whose values differ between trials (the seed last)."""
    keys = sorted({k for t in trials for k in t.config})
    varied = [k for k in keys if len({json.dumps(t.config.get(k), sort_keys=True, default=str) for t in trials}) > 1]
    return sorted(varied, key=lambda k: k == "seed")


def trials_table(exp: Experiment, metric: str) -> list[str]:
    keys = differing(exp.trials)
    head = ["trial", "status", "iterations", f"final {metric}", f"best {metric}"] + keys
    rows = []
    for t in exp.trials:
        _, values = t.series(metric)
        final = f"{values[-1]:.4f}" if len(values) else "-"
        best = f"{values.max():.4f}" if len(values) else "-"
        cells = [t.name, str(t.status), str(t.final.get(ITERATION, 0)), final, best]
        cells += [short_value(t.config.get(k)) for k in keys]
        rows.append(cells)
    return tables.table(head, rows)


def seed_groups(exp: Experiment) -> dict[str, list[TrialRecord]]:
    """Trials grouped by their config without seed and data_seed (platform.results)."""
    return recorded.seed_groups(exp.trials)


def seed_lines(exp: Experiment, metric: str) -> list[str]:
    out = []
    for number, trials in enumerate(g for g in seed_groups(exp).values() if len(g) > 1):
        finals = [t.series(metric)[1][-1] for t in trials if len(t.series(metric)[1])]
        if len(finals) > 1:
            mean, std, low, high = confidence_interval(finals)
            names = ", ".join(t.name for t in trials)
            out.append(f"- config {number + 1} ({names}): {metric} mean {mean:.4f}, std {std:.4f}, "
                       f"95% CI {tables.interval(low, high, '.4f')} over {len(finals)} seeds")  # fmt: skip
    return out


def baseline_lines(exp: Experiment, metric: str) -> list[str]:
    suffix = "/" + metric
    names = sorted({k for t in exp.trials for k in t.final if k.startswith(m.BASELINE_PREFIX) and k.endswith(suffix)})
    out = []
    for key in names:
        values = [float(t.final[key]) for t in exp.trials if key in t.final and _finite(t.final[key])]
        if values:
            label = key[len(m.BASELINE_PREFIX) : -len(suffix)]
            out.append(f"- {label}: {metric} {np.mean(values):.4f} (the same split as the trials)")
    return out


def pbt_lineage(exp: Experiment) -> list[str]:
    """One row per exploit: when, which trial, cloned from which, and what changed."""
    if not exp.pbt_events:
        return []
    rows = []
    for target, source, target_it, source_it, source_config, new_config in exp.pbt_events:
        changed = ", ".join(
            f"{k} {short_value(source_config.get(k))} -> {short_value(v)}"
            for k, v in sorted(new_config.items())
            if source_config.get(k) != v
        )
        rows.append([target_it, _tag_name(exp, target), "<-", f"{_tag_name(exp, source)} ({source_it})", changed])
    return tables.table(["iteration", "trial", "cloned", "from (at its iteration)", "changed"], rows)


def _tag_name(exp: Experiment, tag: str) -> str:
    """Tune's experiment tag ("3_lr=...") -> the trial folder of that index."""
    index = tag.split("_", 1)[0]
    match = [t.name for t in exp.trials if t.name.endswith(f"_{int(index):05d}")] if index.isdigit() else []
    return match[0] if match else tag


def optuna_importances(exp: Experiment) -> tuple[list[str], dict]:
    """fANOVA and PED-ANOVA importances over the study's trials that ran the full budget."""
    import optuna

    if exp.study is None:
        return [], {}
    full = max((t.final.get(ITERATION, 0) for t in exp.trials), default=0)
    finished_ids = {t.trial_id for t in exp.trials if t.final.get(ITERATION, 0) == full}
    complete = [
        t
        for t in exp.study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("tune_trial_id", "") in finished_ids
    ]
    if len(complete) < 2 or not {k for t in complete for k in t.params}:
        return [f"Too few trials ran the full budget ({len(complete)}) for importances."], {}
    study = optuna.create_study(direction=exp.study.direction)
    study.add_trials(complete)
    results = {}
    for label, evaluator in [
        ("fANOVA", optuna.importance.FanovaImportanceEvaluator(seed=0)),
        ("PED-ANOVA", optuna.importance.PedAnovaImportanceEvaluator()),
    ]:
        try:
            results[label] = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except Exception as err:  # too few distinct values for one evaluator: say so, keep the other
            results[label] = {"(not computed)": str(err).splitlines()[0]}
    params = sorted({p for r in results.values() for p in r if not p.startswith("(")})
    lines = [
        f"Over {len(complete)} trials that ran all {full} iterations (of {len(exp.study.trials)} in the study).",
        "",
    ]
    ranked = sorted(params, key=lambda p: -results["fANOVA"].get(p, 0.0) if "fANOVA" in results else 0)
    lines += tables.table(["parameter", *results], [[p, *(_fmt(r.get(p)) for r in results.values())] for p in ranked])
    return lines, {"trials": complete, "importances": results}


def diff_lines(a: Experiment, b: Experiment, metric: str) -> list[str]:
    config_a = (a.lineage or {}).get("base_config", {})
    config_b = (b.lineage or {}).get("base_config", {})
    keys = sorted(k for k in set(config_a) | set(config_b) if config_a.get(k) != config_b.get(k))
    rows = [[k, short_value(config_a.get(k)), short_value(config_b.get(k))] for k in keys]
    if not keys:
        rows.append(["(base configs identical)", "", ""])
    for label, get in (
        ("command", lambda e: " ".join((e.lineage or {}).get("command", []))),
        ("commit", lambda e: (e.lineage or {}).get("git", {}).get("commit", "unknown")[:12]),
        ("trials", lambda e: str(len(e.trials))),
    ):
        rows.append([f"({label})", get(a), get(b)])
    lines = tables.table(["setting", a.name, b.name], rows)
    finals = [[t.series(metric)[1][-1] for t in e.trials if len(t.series(metric)[1])] for e in (a, b)]
    lines.append("")
    for e, values in zip((a, b), finals):
        mean, std, low, high = confidence_interval(values)
        lines.append(f"- {e.name}: final {metric} mean {mean:.4f}, std {std:.4f}, "
                     f"95% CI {tables.interval(low, high, '.4f')}, "
                     f"{len(values)} trials")  # fmt: skip
    if min(map(len, finals)) > 1:
        low, high, diff = welch_interval(finals[1], finals[0])
        lines.append(f"- {b.name} - {a.name}: {diff:+.4f}, Welch 95% CI {tables.interval(low, high, '+.4f')}")
    return lines


def welch_interval(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, mean difference) of mean(x) - mean(y) with Welch's t interval."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = float(x.mean() - y.mean())
    if vx + vy == 0:
        return diff, diff, diff
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(vx + vy)
    return diff - half, diff + half, diff


# ----------------------------------------------------------------------------- figures


def figures(exp: Experiment, metric: str, extra: list[str], optuna_result: dict, x: str = ITERATION) -> dict:
    """{file name: PNG bytes}."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out = {}
    when = _date(exp)
    for key in [metric, *extra]:
        fig, ax = plt.subplots(figsize=(7, 4))
        drawn, banded = False, False
        for number, trials in enumerate(seed_groups(exp).values()):
            series = [t.series(key, x) for t in trials]
            series = [(x, y) for x, y in series if len(x)]
            if not series:
                continue
            drawn = True
            if len(series) > 1:  # a band over seeds: mean and min-max at each shared point
                banded = True
                length = min(len(xs) for xs, _ in series)
                ys = np.stack([y[:length] for _, y in series])
                xs = series[0][0][:length]
                ax.plot(xs, ys.mean(0), label=f"config {number + 1} ({len(series)} seeds)")
                ax.fill_between(xs, ys.min(0), ys.max(0), alpha=0.2)
            else:
                ax.plot(*series[0], label=trials[0].name)
        if drawn:
            ax.set_xlabel(x)
            ax.set_ylabel(key)
            ax.set_title(f"{exp.name}: {key}")
            if len(exp.trials) <= 12:
                ax.legend(fontsize=7)
            band = "lines: a config's mean over its seeds, bands: their min to max" if banded else None
            note = tables.caption(f"{key} against {x}", f"{len(exp.trials)} trials", band, when)
            out[f"curve_{_slug(key)}.png"] = tables.png(fig, note)
        plt.close(fig)
    hparams = sorted({k for t in exp.trials for r in t.rows for k in r if k.startswith(m.HPARAM_PREFIX)})
    hparams = [k for k in hparams if len({r.get(k) for t in exp.trials for r in t.rows}) > 1]  # mutated ones
    if exp.pbt_events and hparams:
        fig, axes = plt.subplots(len(hparams), 1, figsize=(7, 2.2 * len(hparams)), squeeze=False)
        for ax, key in zip(axes[:, 0], hparams):
            for t in exp.trials:
                ax.step(*t.series(key), where="post", label=t.name)
            ax.set_ylabel(key[len(m.HPARAM_PREFIX) :])
        axes[-1, 0].set_xlabel(ITERATION)
        axes[0, 0].set_title(f"{exp.name}: the schedule each PBT trial followed")
        if len(exp.trials) <= 12:
            axes[0, 0].legend(fontsize=7)
        note = tables.caption("hyperparameter values against training_iteration", f"{len(exp.trials)} trials",
                              f"{len(exp.pbt_events)} exploits", when)  # fmt: skip
        out["pbt_schedules.png"] = tables.png(fig, note)
        plt.close(fig)
    if optuna_result:
        importances = optuna_result["importances"].get("fANOVA", {})
        top = [p for p in importances if not p.startswith("(")][:3]
        if top:
            fig, axes = plt.subplots(1, len(top), figsize=(4 * len(top), 3.5), squeeze=False)
            for ax, param in zip(axes[0], top):
                trials = [t for t in optuna_result["trials"] if param in t.params]
                ax.scatter([t.params[param] for t in trials], [t.value for t in trials], s=14)
                ax.set_xlabel(param)
                ax.set_ylabel("objective")
            axes[0, 0].set_title(f"{exp.name}: slices of the top parameters", loc="left")
            sample = f"{len(optuna_result['trials'])} study trials that ran the full budget"
            note = tables.caption(
                f"objective ({exp.study.directions[0].name.lower()}) per parameter", sample, None, when
            )
            out["optuna_slices.png"] = tables.png(fig, note)
            plt.close(fig)
    return out


def _date(exp: Experiment):
    """The day the experiment ran (its lineage), for figure captions; None (today) without one."""
    import datetime

    try:
        return datetime.date.fromisoformat(str((exp.lineage or {}).get("time", ""))[:10])
    except ValueError:
        return None


# ----------------------------------------------------------------------------- rendering


def markdown(exp: Experiment, metric: str, images: dict, importance_lines: list[str]) -> str:
    lines = [f"# {exp.name}", "", f"Folder: `{exp.path}`", ""]
    if exp.lineage:
        git = exp.lineage.get("git", {})
        source = git.get("commit", git.get("error", "unknown"))
        if git.get("dirty"):
            source += " with uncommitted changes (the diff is in lineage.json)"
        packages = ", ".join(f"{k} {v}" for k, v in exp.lineage.get("packages", {}).items() if v)
        lines += [
            "## Lineage",
            "",
            f"- command: `{' '.join(exp.lineage.get('command', []))}`",
            f"- source: {source}",
            f"- when: {exp.lineage.get('time')}; machine: {exp.lineage.get('machine', {}).get('cpu', '')}",
            f"- packages: {packages}",
            f"- search: {exp.lineage.get('search')}, seeds {exp.lineage.get('seeds')}",
            "",
        ]
    lines += ["## Trials", "", *trials_table(exp, metric), ""]
    groups = seed_lines(exp, metric)
    if groups:
        lines += ["### Seeds", "", *groups, ""]
    baselines = baseline_lines(exp, metric)
    if baselines:
        lines += ["### Baselines", "", *baselines, ""]
    if exp.tests:
        lines += ["### Test figures of the selected trial(s), measured once after selection", ""]
        keys = [k for k, v in exp.tests[0].items() if k.startswith(m.TEST + "/") and isinstance(v, (int, float))]
        keys = [k for k in keys if not k.endswith("/" + m.USERS)]  # not the per-user lists, nor the count
        rows = [[t["trial"], t.get("seed"), *(_fmt(t.get(k)) for k in keys)] for t in exp.tests]
        lines += tables.table(["trial", "seed", *keys], rows)
        lines.append("")
    lines += ["## Learning curves", ""]
    lines += [f"![{name}]({name})" for name in images if name.startswith("curve_")] + [""]
    lineage_rows = pbt_lineage(exp)
    if lineage_rows:
        lines += ["## PBT lineage", "", *lineage_rows, ""]
        if "pbt_schedules.png" in images:
            lines += ["![pbt_schedules.png](pbt_schedules.png)", ""]
    if importance_lines:
        lines += ["## Optuna: hyperparameter importances", "", *importance_lines, ""]
        if "optuna_slices.png" in images:
            lines += ["![optuna_slices.png](optuna_slices.png)", ""]
    return "\n".join(lines)


def report(location: str, out: str | None, metric: str, extra: list[str], x: str = ITERATION) -> str:
    """Writes report.md, report.html and the PNGs; returns the trials table."""
    exp = load(location)
    importance_lines, optuna_result = optuna_importances(exp)
    images = figures(exp, metric, extra, optuna_result, x)
    text = markdown(exp, metric, images, importance_lines)
    target = Folder(out or location)
    for name, data in images.items():
        target.write(name, data)
    target.write("report.md", text.encode())
    page = target.write("report.html", tables.html_page(text, images, exp.name).encode())
    return "\n".join(trials_table(exp, metric)) + f"\nWritten: {page} (and report.md, {len(images)} PNGs)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m platform.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("experiments", nargs="*", help="experiment folders or URIs")
    p.add_argument("--out", help="write here instead of into each experiment folder (one experiment only)")
    p.add_argument("--metric", default=m.SCORE, help="the metric of the tables and curves (default: score)")
    p.add_argument("--metrics", default="", help="comma-separated extra metrics to plot against iterations")
    p.add_argument("--x", default=ITERATION, help="the curves' x axis: training_iteration (default) or a "
                   "reported counter such as train/env_steps")  # fmt: skip
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="two experiments side by side")
    return p


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    extra = [k for k in args.metrics.split(",") if k]
    try:
        if args.diff:
            a, b = (load(x) for x in args.diff)
            print("\n".join(diff_lines(a, b, args.metric)))
            return 0
        if not args.experiments:
            print("error: name at least one experiment folder (or --diff A B)", file=sys.stderr)
            return 2
        if args.out and len(args.experiments) > 1:
            print("error: --out takes one experiment; leave it out to write into each folder", file=sys.stderr)
            return 2
        for location in args.experiments:
            print(report(location, args.out, args.metric, extra, args.x))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)


if __name__ == "__main__":
    sys.exit(run())
