"""The console a new user meets: `--show-config`, the start lines, a quiet run, short trial names."""

import dataclasses
import re
import subprocess
import sys

import pytest
import ray

import search_spaces
from tests.conftest import ROOT, run_cli, start_local_ray, trial_dirs


@pytest.mark.parametrize("model", sorted(search_spaces.MODELS))
def test_show_config_lists_every_field_with_its_default(model, capsys):
    code, out, _ = run_cli(capsys, model, "--show-config")
    assert code == 0
    spec = search_spaces.get(model)
    keys = out.split("\nPBT mutates (")[0]  # the config section
    lines = {line.split()[0]: line for line in keys.splitlines() if line.startswith("    ")}
    for field in dataclasses.fields(spec.config):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert field.name in lines, field.name
        assert repr(default) in lines[field.name], (field.name, lines[field.name])
    mutated = out.split("\nPBT mutates (")[1].split("\nOptuna searches")[0]
    for key in spec.pbt_mutations:  # what PBT mutates, and each budget
        assert re.search(rf"^    {re.escape(key)}\s", mutated, re.M), key
    assert "smoke" in out.split("budgets")[1] and "full" in out.split("budgets")[1]


def test_help_with_a_model_shows_its_settings(capsys):
    code, out, _ = run_cli(capsys, "dqn", "--help")
    assert code == 0 and "usage: python -m platform.tune" in out and "target_every" in out
    assert "epsilon.style" in out  # an Optuna parameter, read from the define-by-run space


@pytest.fixture(scope="module")
def console_runs(tmp_path_factory):
    """A quiet and a verbose smoke run of the default search, each through the CLI in a subprocess
    that starts its own Ray: the tests that read them ask for own_ray, so they run before the
    session's Ray starts (tests/conftest.py), and pause it if it has."""
    had_ray = ray.is_initialized()
    ray.shutdown()
    storage = tmp_path_factory.mktemp("console")
    runs = {}
    for name, extra in (("quiet", []), ("loud", ["-v"])):
        argv = [sys.executable, "-m", "platform.tune", "dqn", "--budget", "smoke", "--storage", str(storage),
                "--name", name, *extra]  # fmt: skip
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = done.stdout + done.stderr
    if had_ray:
        start_local_ray()
    return storage, runs


@pytest.mark.slow
def test_default_console_is_quiet_and_points_at_the_right_places(own_ray, console_runs):
    storage, runs = console_runs
    out, experiment = runs["quiet"], storage / "quiet"
    assert "Checkpoint successfully created" not in out and "driver_artifacts" not in out
    assert "started with configuration" not in out and "[Exploit]" not in out
    watch = f"  watch:   tensorboard --logdir {experiment}"
    assert watch in out and out.index(watch) < out.index("finished dqn_0000")  # before the first result
    assert f"  resume:  python -m platform.tune dqn --budget smoke --storage {storage} --name quiet --resume" in out
    assert "tunelab: dqn, pbt search: 2 trials x 2 iterations" in out
    assert len(re.findall(r"^finished dqn_0000\d: score ", out, re.M)) == 2  # one line per finished trial
    assert re.search(r"^PBT: dqn_0000\d \(score .*\) cloned dqn_0000\d", out, re.M)  # exploits in one line
    assert f"TensorBoard: tensorboard --logdir {experiment}" in out  # and again at the end


@pytest.mark.slow
def test_verbose_brings_back_tunes_output(own_ray, console_runs):
    _, runs = console_runs
    assert "started with configuration" in runs["loud"] and "[Exploit]" in runs["loud"]


@pytest.mark.slow
def test_trial_folders_and_tensorboard_runs_have_short_names(own_ray, console_runs):
    storage, _ = console_runs
    names = [path.name for path in trial_dirs(storage / "quiet")]
    assert names == ["dqn_00000", "dqn_00001"]
    for name in names:  # TensorBoard names a run after the folder of its event files
        assert list((storage / "quiet" / name).glob("events.out.tfevents*"))
        assert '"lr"' in (storage / "quiet" / name / "params.json").read_text()  # the full config stays there
