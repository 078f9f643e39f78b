"""`python -m platform.report` on real smoke runs: a dt PBT run and a dqn Optuna run, read from
storage, every section checked, and the HTML page loaded in a real headless Chromium."""

import json
import re
import shutil
import subprocess

import pytest

from platform import report
from tests.conftest import trial_dirs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("report")
    pbt = ["dt", "--budget", "smoke", "--samples", "3", "--storage", str(storage)]
    optuna = ["dqn", "--budget", "smoke", "--search", "optuna", "--samples", "4", "--storage", str(storage)]
    for argv, name in [(pbt, "pbt"), (optuna, "optuna")]:
        from platform import tune

        assert tune.run([*argv, "--name", name]) == 0
    return storage


@pytest.mark.slow
def test_pbt_report_has_every_section(runs, capsys):
    experiment = runs / "pbt"
    assert report.run([str(experiment)]) == 0
    printed = capsys.readouterr().out
    text = (experiment / "report.md").read_text()
    for section in ("## Lineage", "## Trials", "## Learning curves", "## PBT lineage", "### Baselines"):
        assert section in text, section
    assert "Test figures of the selected trial" in text
    # The trials table shows the settings that differ (PBT's mutations), not the fixed ones.
    header = next(line for line in printed.splitlines() if line.startswith("| trial |"))
    assert "lr" in header and "synthetic_users" not in header and "iterations |" in header
    assert len([line for line in printed.splitlines() if line.startswith("| dt_0")]) == 3
    # One lineage row per exploit Tune logged, naming trial folders.
    exploits = (experiment / "pbt_global.txt").read_text().strip().splitlines()
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| dt_\d{5} \| <- \| dt_\d{5}", line)]
    assert len(rows) == len(exploits) > 0
    for name in ("curve_score.png", "pbt_schedules.png"):
        assert (experiment / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The page is the markdown rendered (its tables as tables) with every figure inlined.
    page = (experiment / "report.html").read_text()
    assert page.count("<table>") == text.count("\n|---") and page.count("<img ") == text.count("![")
    assert page.count('src="data:image/png;base64,') == page.count("<img ")


@pytest.mark.slow
def test_optuna_report_ranks_hyperparameters_over_full_budget_trials(runs, capsys):
    experiment = runs / "optuna"
    assert report.run([str(experiment), "--x", "train/env_steps", "--metrics", "train/epsilon"]) == 0
    assert (experiment / "curve_train_epsilon.png").exists()
    text = (experiment / "report.md").read_text()
    assert "## Optuna: hyperparameter importances" in text
    full = [t for t in trial_dirs(experiment) if _iterations(t) == 2]
    if len(full) >= 2:
        assert f"Over {len(full)} trials that ran all 2 iterations (of 4 in the study)" in text
        assert "| parameter | fANOVA | PED-ANOVA |" in text
        assert (experiment / "optuna_slices.png").exists()
    else:  # ASHA stopped all but one: the report says so instead of ranking on early-stopped trials
        assert f"Too few trials ran the full budget ({len(full)})" in text


@pytest.mark.slow
def test_diff_gives_an_interval_of_the_difference(runs, capsys):
    assert report.run(["--diff", str(runs / "pbt"), str(runs / "pbt")]) == 0
    out = capsys.readouterr().out
    assert "| (base configs identical) | | |" in out
    low, high = re.search(r"pbt - pbt: \+0\.0000, Welch 95% CI \[([-+.\d]+), ([-+.\d]+)\]", out).groups()
    assert float(low) == -float(high) < 0  # the same scores twice: a symmetric interval around 0


def test_missing_experiment_is_one_line(tmp_path, capsys):
    assert report.run([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such experiment folder" in err and err.count("\n") == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
@pytest.mark.slow
def test_html_page_loads_in_a_real_browser_with_every_figure(runs, tmp_path):
    experiment = runs / "pbt"
    report.run([str(experiment)])
    page = experiment / "report.html"
    images = page.read_text().count("<img ")
    assert images >= 2
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]  # fmt: skip
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-figures="{images}/{images}"' in body, body  # every figure decoded
    assert "data-errors" not in body, body  # no script error


def _iterations(trial_dir) -> int:
    lines = (trial_dir / "result.json").read_text().strip().splitlines()
    return json.loads(lines[-1])["training_iteration"] if lines else 0
