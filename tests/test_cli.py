"""`python -m platform.tune` end to end on the smoke budget, on the session's local Ray."""

import contextlib
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from platform import report
from platform import tune as cli
from platform.results import OPTUNA_DB
from tests.conftest import ROOT, read_results, run_cli, trial_dirs, trial_results
from trainables import metrics as m


def event_tags(trial_dir: str) -> tuple[set, set]:
    scalars, plugins = set(), set()
    for path in glob.glob(os.path.join(trial_dir, "events.out.tfevents*")):
        events = EventAccumulator(path)
        events.Reload()
        scalars |= set(events.Tags()["scalars"])
        with contextlib.suppress(KeyError):  # a PBT-restarted trial's earlier file has no HParams
            plugins |= set(events.PluginTagToContent("hparams"))
    return scalars, plugins


@pytest.fixture(scope="module")
def pbt_run(ray_session, tmp_path_factory):
    """The default search on the smoke budget, logged to MLflow too: one run that several tests read."""
    storage = tmp_path_factory.mktemp("results")
    argv = ["dt", "--budget", "smoke", "--storage", str(storage), "--name", "pbt", "--mlflow", str(storage / "mlruns")]
    return cli.run(argv), storage


@pytest.mark.slow
def test_pbt_smoke_run_writes_results_and_tensorboard(pbt_run, capsys):
    code, storage = pbt_run
    assert code == 0
    experiment = storage / "pbt"
    trials = trial_dirs(experiment)
    assert len(trials) == 2  # the smoke population
    for trial in trials:
        scalars, plugins = event_tags(trial)
        assert "ray/tune/" + m.SCORE in scalars
        assert "ray/tune/" + m.baseline_metric(m.BASELINE_POPULARITY, m.SCORE) in scalars
        # Every PBT-mutated value is a scalar each iteration, and HParams were written at the end.
        assert {"ray/tune/hparams/" + k for k in ("lr", "weight_decay", "dropout", "target_return_scale")} <= scalars
        assert "_hparams_/session_start_info" in plugins
        assert glob.glob(os.path.join(trial, "checkpoint_*"))


@pytest.mark.slow
def test_summary_names_best_trial_and_baselines(ray_session, tmp_path, capsys):
    # --cpus-per-trial 2: one trial at a time, so the second seed always reuses the first actor.
    code, out, _ = run_cli(
        capsys,
        "dt",
        "--budget",
        "smoke",
        "--search",
        "none",
        "--seeds",
        "2",
        "--cpus-per-trial",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        "seeds",
        "--set",
        "iterations=2",
    )
    assert code == 0
    assert "Best trial: dt_0000" in out and "selected on the validation score" in out
    assert "vs popularity: " in out and "vs random: " in out
    assert "over 2 seeds: score mean" in out and "95% CI" in out
    # Issue 9, problem 2: trials report validation figures only; each seed's selected trial is
    # measured on the test split once, after the run, and labelled as test.
    assert "TEST (measured once per seed on its selected trial, 2 seeds, 30 test users)" in out
    tests = json.loads((tmp_path / "seeds" / "test.json").read_text())
    assert sorted(t["seed"] for t in tests) == [0, 1]
    assert all(0.0 <= t[m.split_metric(m.TEST, m.NDCG)] <= 1.0 for t in tests)
    # Issue 13, part 1: the lineage was written before the trials, and the summary names the source.
    recorded = json.loads((tmp_path / "seeds" / "lineage.json").read_text())
    assert recorded["seeds"] == [0, 1] and recorded["base_config"]["iterations"] == 2
    assert recorded["command"][3:5] == ["dt", "--budget"] and recorded["packages"]["ray"] == "2.60.0"
    assert "commit" in recorded["git"] and "Source: " in out
    rows = [row for trial in trial_dirs(tmp_path / "seeds") for row in read_results(trial)]
    assert rows and not [k for row in rows for k in row if k.startswith(m.TEST + "/")]
    assert f"tensorboard --logdir {tmp_path / 'seeds'}" in out
    assert len(trial_dirs(tmp_path / "seeds")) == 2


@pytest.mark.slow
def test_optuna_search_stores_its_study(ray_session, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        "dt",
        "--budget",
        "smoke",
        "--search",
        "optuna",
        "--samples",
        "3",
        "--storage",
        str(tmp_path),
        "--name",
        "opt",
    )
    assert code == 0 and "Best trial:" in out
    # What a newcomer reads: what score is, and the strong baselines beside it on the same users.
    assert "(score = valid/true_rating_norm, the true rating of the top 10" in out
    assert "vs ease:" in out and "vs itemknn:" in out and "baseline/ease/test/hr@10" in out
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{tmp_path / 'opt' / OPTUNA_DB}")
    assert len(study.trials) == 3
    assert {"lr", "context_length", "layers", "width", "target_return_scale"} <= set(study.trials[0].params)
    assert any(t.value is not None for t in study.trials)
    assert len(trial_dirs(tmp_path / "opt")) == 3


@pytest.mark.slow
def test_random_search(ray_session, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        "dt",
        "--budget",
        "smoke",
        "--search",
        "random",
        "--samples",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        "rnd",
        "--set",
        "iterations=2",
    )
    assert code == 0 and "Best trial:" in out
    configs = [Path(t, "params.json").read_text() for t in trial_dirs(tmp_path / "rnd")]
    assert len(configs) == 2 and configs[0] != configs[1]  # two different samples


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "learning_rate=1"], "unknown config key 'learning_rate' for model 'dt'"),
        (["--set", "batch_size=big"], "config key 'batch_size' is an integer, got 'big'"),
        (["--set", "dropout=2"], "dropout must be in [0, 1)"),
        (["--set", "tokens=rs"], "tokens must be 'a' plus any of"),
        (["--set", "lr"], "expected key=value"),
        (["--samples", "0"], "--samples must be >= 1"),
        (["--search", "optuna", "--seeds", "3"], "--seeds repeats one config"),
        (["--set", "data=/nonexistent/ratings.tsv"], "no such file"),
        (["--storage", str(ROOT / "runs")], "inside the git work tree"),
        (["--resume", "--name", "never-ran"], "no experiment 'never-ran'"),
    ],
)
def test_bad_cli_values_are_one_line(tmp_path, capsys, argv, message):
    args = ["dt", "--budget", "smoke", "--storage", str(tmp_path), *argv]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (ROOT / "runs").exists()


@pytest.mark.slow
def test_failed_runs_leave_earlier_results_untouched(pbt_run, tmp_path, capsys):
    _, storage = pbt_run
    experiment = storage / "pbt"
    before = {p: p.stat().st_mtime_ns for p in experiment.rglob("*")}
    bad = tmp_path / "bad.tsv"
    bad.write_text("u1 i1 5 1\nu1 i2 oops 2\n")
    for argv in (["--name", "pbt"], ["--name", "pbt2", "--set", f"data={bad}"]):
        code, _, err = run_cli(capsys, "dt", "--budget", "smoke", "--storage", str(storage), *argv)
        assert code == 2
    assert "line 2, column 'rating'" in err
    assert {p: p.stat().st_mtime_ns for p in experiment.rglob("*")} == before
    assert not (storage / "pbt2").exists()


@pytest.mark.slow
def test_model_listing_and_unknown_model():
    listing = subprocess.run(
        [sys.executable, "-m", "platform.tune"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0 and "dt " in listing.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "platform.tune", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr and "dt " in unknown.stderr


@pytest.mark.slow
def test_resume_of_a_finished_experiment_reruns_nothing(pbt_run, capsys):
    _, storage = pbt_run
    experiment = storage / "pbt"
    results_before = {t: Path(t, "result.json").read_text() for t in trial_dirs(experiment)}
    code, out, _ = run_cli(capsys, "dt", "--budget", "smoke", "--storage", str(storage), "--name", "pbt", "--resume")
    assert code == 0 and "Best trial:" in out
    assert {t: Path(t, "result.json").read_text() for t in trial_dirs(experiment)} == results_before


@pytest.mark.slow
def test_vary_data_gives_each_seed_its_own_split(ray_session, tmp_path, capsys):
    """Issue 9, part 5: with --vary-data, data_seed follows the seed, so each seed trains and is
    tested on another split (and other synthetic data): the interval covers data variation."""
    code, out, _ = run_cli(
        capsys, "dt", "--budget", "smoke", "--search", "none", "--seeds", "2", "--vary-data",
        "--storage", str(tmp_path), "--name", "vary", "--set", "iterations=1",
    )  # fmt: skip
    assert code == 0, out
    params = [json.loads((Path(t) / "params.json").read_text()) for t in trial_dirs(tmp_path / "vary")]
    assert sorted((p["seed"], p["data_seed"]) for p in params) == [(0, 0), (1, 1)]
    tests = json.loads((tmp_path / "vary" / "test.json").read_text())
    popularity = m.baseline_metric(m.BASELINE_POPULARITY, m.split_metric(m.TEST, m.TRUE_RATING_NORM))
    assert tests[0][popularity] != tests[1][popularity]  # popularity is deterministic: only the data differ
    # Issue 22: the two seeds are one config (seed and data_seed differ, nothing else), so the summary
    # and the report give one interval over both, not two zero-width ones "over 1 seeds".
    finals = [rows[-1][m.SCORE] for rows in trial_results(tmp_path / "vary")]
    assert "over 1 seeds" not in out
    (line,) = [x for x in out.splitlines() if "over 2 seeds: score" in x]
    mean = float(re.search(r"mean (\S+),", line).group(1))
    assert mean == pytest.approx(sum(finals) / 2, abs=1e-4) and finals[0] != finals[1]
    low, high = map(float, re.search(r"CI \[(\S+), (\S+)\]", line).groups())
    assert low < min(finals) and high > max(finals)
    assert report.run([str(tmp_path / "vary")]) == 0
    text = (tmp_path / "vary" / "report.md").read_text()
    assert "### Seeds" in text and "over 2 seeds" in text
    code, _, err = run_cli(
        capsys, "dqn", "--budget", "smoke", "--seeds", "2", "--vary-data", "--storage", str(tmp_path)
    )
    assert code == 2 and "dqn has no data_seed" in err


@pytest.mark.slow
def test_mlflow_gets_every_trial_through_rays_logger(pbt_run):
    """Issue 13, part 5: --mlflow PATH logs every trial to a local MLflow file store, through Ray's
    MLflowLoggerCallback: one MLflow run per trial with its params and per-iteration metrics."""
    import mlflow

    code, storage = pbt_run
    assert code == 0
    mlflow.set_tracking_uri((storage / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["pbt"])
    assert len(runs) == 2  # the smoke population
    assert runs["metrics.score"].notna().all() and "metrics.valid/hr_at_10" in runs.columns
    assert runs["params.lr"].notna().all()
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(runs["run_id"].iloc[0], "score")
    assert [h.step for h in history] == [1, 2, 3]  # every iteration of the trial


@pytest.mark.slow
def test_a_run_that_never_started_is_started_again_not_refused(ray_session, tmp_path, capsys):
    """A crash after the lineage was written but before Tune started leaves a folder with no run in
    it: the same command starts it (no dead end), and --resume says there is nothing to resume."""
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "lineage.json").write_text("{}")
    base = ["dt", "--budget", "smoke", "--search", "none", "--storage", str(tmp_path), "--name", "early"]
    code, _, err = run_cli(capsys, *base, "--resume")
    assert code == 2 and "never started a trial; run the command without --resume" in err
    code, out, _ = run_cli(capsys, *base, "--set", "iterations=1")
    assert code == 0 and "Best trial:" in out
    assert (tmp_path / "early" / "lineage-resume-1.json").exists()  # the first lineage file is kept
    code, _, err = run_cli(capsys, *base, "--set", "iterations=1")  # now it holds a run: never overwritten
    assert code == 2 and "already exists" in err and "pass --resume" in err
