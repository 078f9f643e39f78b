"""The end-of-run summary: best trial, its config against the defaults, its score beside the
baselines, seed statistics, failed trials with their error files, and where everything is."""

import dataclasses
import math

from platform import results as recorded
from platform import tables
from platform.results import STUDY
from platform.tables import short_value
from trainables import metrics as m
from trainables.stats import confidence_interval


def render(results, plan, tests: list[dict] | None = None, resumed: bool = False, source: str = "") -> str:
    """`tests`: the test figures of the selected trials (platform.selection), measured once after
    selection; every other figure here is a validation figure."""
    metric, mode = plan.spec.metric, plan.spec.mode
    lines = ["", f"== tunelab: {plan.model}, {plan.search} search, {len(results)} trials =="]
    if resumed:
        rebuilt = {
            "pbt": "; the PBT population and its synchronisation point were rebuilt from the trials' results",
            "optuna": "; the Optuna study continued and ASHA's rungs were rebuilt from the trials' results",
            "optuna+pbt": "; the study was read back (or finished) and the PBT population rebuilt",
        }
        lines.append(f"Resumed: unfinished trials continued from their last checkpoints{rebuilt.get(plan.search, '')}")
    errors = [r for r in results if r.error is not None]
    finished = [r for r in results if r.error is None and r.metrics and metric in r.metrics]
    if not finished:
        lines.append("No trial reported a result.")
    else:
        best = recorded.best(finished, metric, mode)
        name, iteration = best.path.rsplit("/", 1)[-1], best.metrics.get("training_iteration")
        on = f"the validation {metric}" if plan.spec.measures_test else f"its last {metric}"
        lines.append(f"Best trial: {name}  (iteration {iteration}; selected on {on})")
        lines.append(f"  {metric}: {best.metrics[metric]:.4f}")
        if plan.spec.score_meaning is not None:
            lines.append(f"  ({plan.spec.score_meaning(best.metrics)})")
        for key in sorted(best.metrics):
            if key.startswith(m.BASELINE_PREFIX) and key.endswith("/" + metric):
                name = key[len(m.BASELINE_PREFIX) : -len(metric) - 1]
                lines.append(f"  vs {name}: {best.metrics[key]:.4f}")
        for key in sorted(k for k in best.metrics if k.startswith(("eval/", m.VALID + "/"))):
            value = best.metrics[key]
            if key.endswith("/" + m.USERS):
                lines.append(f"  {key}: {int(value)}")
            else:
                lines.append(f"  {key}: {value:.4f}" if math.isfinite(value) else f"  {key}: not reached")
        lines.append(f"  config (differs from defaults): {_changed(best.config, plan.spec.config)}")
        if plan.start:
            where = f"{results.experiment_path}/{STUDY}"
            lines.append(
                f"  optuna+pbt: the population started from the best {len(plan.start)} configs of the Optuna "
                f"study in {where} (python -m platform.report {where} for its importances)"
            )
        if plan.replay is not None:
            lines += _replay_lines(finished, metric, plan.replay)
        elif plan.search == "pbt" and plan.seeds > 1:
            lines += _population_lines(finished, metric, mode, plan.spec.seed_metrics)
        elif plan.seeds > 1 or plan.search == "none" and len(finished) > 1:
            lines += _seed_lines(finished, metric, plan.spec.seed_metrics)
    if tests:
        lines += test_figure_lines(tests)
    for r in errors:
        lines.append(f"FAILED trial {r.path.rsplit('/', 1)[-1]}: {type(r.error).__name__}; see {r.path}/error.txt")
    if source:
        lines.append(source)
    lines.append(f"Results: {results.experiment_path}")
    lines.append(f"TensorBoard: tensorboard --logdir {results.experiment_path}")
    return "\n".join(lines)


def _replay_lines(results, metric: str, replay) -> list[str]:
    finals = [float(r.metrics[metric]) for r in results if math.isfinite(float(r.metrics[metric]))]
    mean, std, low, high = confidence_interval(finals)
    changes = len(replay.scheduler.change_points)
    inside = "inside" if low <= replay.score <= high else "OUTSIDE" if math.isfinite(low) else "no interval for"
    return [
        f"  replay of {replay.trial}'s PBT schedule ({changes} change points) over {len(finals)} seeds: "
        f"{metric} mean {mean:.4g}, std {std:.4g}, 95% CI {tables.interval(low, high, '.4g')}",
        f"  the original {replay.trial} ended at {replay.score:.4g}: {inside} the replay's interval",
    ]


def test_figure_lines(tests: list[dict]) -> list[str]:
    """The test figures of the selected trial(s): measured once, after selection, never selected on."""
    counts = (m.USERS, m.EPISODES)
    headline = tuple("/" + name for name in (m.HR, m.NDCG, m.TRUE_RATING_NORM, m.RETURN_MEAN))
    figures = [k for k, v in tests[0].items() if isinstance(v, (int, float))]  # not the per-user lists
    keys = [k for k in figures if k.startswith(m.TEST + "/") and not k.endswith(tuple("/" + c for c in counts))]
    # then the baselines (recommenders: popularity and random; RL: the random policy) on the same
    # test users or episodes, headline figures only
    keys += [k for k in tests[0] if k.startswith(m.BASELINE_PREFIX) and k.endswith(headline)]
    on = ", ".join(
        f"{int(tests[0][m.split_metric(m.TEST, c)])} test {c}" for c in counts if m.split_metric(m.TEST, c) in tests[0]
    )
    if len(tests) == 1:
        head = f"TEST (measured once, after selection{'; ' + on if on else ''}): {tests[0]['trial']}"
        return [head] + [f"  {k}: {tests[0][k]:.4f}" for k in keys]
    out = [f"TEST (measured once per seed on its selected trial, {len(tests)} seeds{', ' + on if on else ''}):"]
    for k in keys:
        mean, std, low, high = confidence_interval([t[k] for t in tests])
        out.append(f"  {k}: mean {mean:.4f}, std {std:.4f}, 95% CI {tables.interval(low, high, '.4f')}")
    return out


def _population_lines(results, metric: str, mode: str, extra: tuple = ()) -> list[str]:
    """PBT with --seeds N runs N independent populations (one per seed). Each population selects its
    best trial; the interval is over those N selected figures (PBT gives every trial its own config,
    so grouping by config would give one-member groups)."""
    best = recorded.selected(results, metric, mode, per_seed=True)
    lines = _seed_lines(best, metric, extra, by_config=False)
    lines[0] = lines[0].replace(f"over {len(best)} seeds:", f"over {len(best)} independent PBT populations, "
                                f"each's selected trial:", 1)  # fmt: skip
    return lines


def _seed_lines(results, metric: str, extra: tuple = (), by_config: bool = True) -> list[str]:
    """Mean, std and 95% interval over the seeds of each config (trials that differ only in seed and
    data_seed, so --vary-data runs group too), for the score and `extra` metrics.

    An extra metric that is NaN for some seeds (steps to solve, for a seed that never solved) is
    summarized over the seeds that have it, and the count says how many that is.
    """
    groups = recorded.seed_groups(results) if by_config else {"": list(results)}
    out = []
    for group in groups.values():
        runs = [r.metrics for r in group]
        for name in (metric, *extra):
            values = [float(r[name]) for r in runs if name in r and math.isfinite(float(r[name]))]
            if name != metric:
                prefix = f"  {name}: reached by {len(values)}/{len(runs)} seeds"
                if not values:
                    out.append(prefix)
                    continue
                prefix += ","
            else:
                prefix = f"  over {len(runs)} seeds: {name}"
            mean, std, low, high = confidence_interval(values)
            out.append(f"{prefix} mean {mean:.4g}, std {std:.4g}, 95% CI {tables.interval(low, high, '.4g')}")
    return out


def _changed(config: dict, config_cls) -> str:
    defaults = {
        f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(config_cls)
    }
    changed = {k: v for k, v in config.items() if defaults.get(k) != v}
    return ", ".join(f"{k}={short_value(v)}" for k, v in sorted(changed.items())) or "(defaults)"
