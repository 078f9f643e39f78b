"""Fault tolerance on a local multi-node Ray (ray.cluster_utils.Cluster): a node lost in the middle
of a PBT run, a spot preemption, a driver crash and resume, a model that raises.

The tests that start a cluster are marked `cluster`, and tests/conftest.py runs those first, before
this process has run any other Ray: after the whole suite had used the in-process local Ray, the
node of a trial's actor could not be told reliably from the GCS table (two fresh-clone CI runs),
while it always could in a fresh process.

Nodes are killed from a Tune callback, which runs in the driver's main thread (a background
thread cannot add or remove nodes). Callbacks are pickled with the experiment, so they find the
Cluster in CLUSTERS by key instead of holding it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster
from ray.core.generated import autoscaler_pb2

import search_spaces
from platform import tune as cli
from platform.tune import start_ray
from tests.conftest import ROOT, read_results, start_local_ray

CLUSTERS: dict[str, Cluster] = {}
# What the kill callback saw. Module state, not the callback's: Tune pickles callbacks with the
# experiment, and a resumed run works on an unpickled copy.
EVENTS: dict = {}


@pytest.fixture(scope="module")
def cluster():
    """A head with 1 CPU and two 1-CPU worker nodes, started once for the module's cluster tests: a
    node-loss test adds a fresh node for the one it kills (as the autoscaler would), so the next test
    finds the same shape. The session's local Ray is paused meanwhile (conftest runs these first)."""
    had_ray = ray.is_initialized()
    ray.shutdown()
    # Fast health checks: a node killed without warning (as a spot reclaim does) is noticed in ~1 s.
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 200, "health_check_failure_threshold": 5},
        },
    )
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    CLUSTERS["test"] = c
    EVENTS.clear()
    EVENTS.update(killed=False, lost={}, rows_before={}, first_after={}, failures={})
    yield c
    ray.shutdown()
    c.shutdown()
    CLUSTERS.pop("test", None)
    if had_ray:
        start_local_ray()


class KillNode(tune.Callback):
    """At `at_iteration` of some trial running on a worker node, removes that node (drained as a
    spot preemption first if `preempt`) and adds a fresh one, as the autoscaler would. Records in
    EVENTS: the trials on the node and their last checkpoint's iteration (`lost`), the results every
    trial had reported (`rows_before`), the lost trials' first result after the kill
    (`first_after`) and num_failures of each trial Tune recovered (`failures`)."""

    def __init__(self, at_iteration: int, preempt: bool):
        self.at_iteration, self.preempt = at_iteration, preempt

    def on_trial_recover(self, iteration, trials, trial, **info):
        EVENTS["failures"][trial.trial_id] = trial.run_metadata.num_failures

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if EVENTS["killed"]:
            # The dead node's processes can still deliver a result in flight: the restart is the
            # first result from another process.
            lost = trial.trial_id in EVENTS["lost"] and result["pid"] != EVENTS["lost_pid"][trial.trial_id]
            if lost and trial.trial_id not in EVENTS["first_after"]:
                EVENTS["first_after"][trial.trial_id] = result
            return
        if result["training_iteration"] < self.at_iteration:
            return
        cluster = CLUSTERS["test"]
        nodes = {node.node_id: node for node in cluster.worker_nodes}
        where = {t.trial_id: node_of(t) for t in trials if t.status == "RUNNING" and t.last_result}
        victim = where.get(trial.trial_id)
        EVENTS.setdefault("seen", []).append((trial.trial_id, result["training_iteration"], victim, list(nodes)))
        if victim not in nodes:
            return  # this trial runs on the head: wait for one on a worker
        by_id = {t.trial_id: t for t in trials}
        EVENTS["lost"] = {tid: checkpoint_iteration(by_id[tid]) for tid, node in where.items() if node == victim}
        EVENTS["lost_pid"] = {tid: by_id[tid].last_result["pid"] for tid in EVENTS["lost"]}
        EVENTS["rows_before"] = {t.trial_id: len(read_results(t.path)) for t in trials if t.path}
        if self.preempt:
            # A spot reclaim: the autoscaler drains the node with the preemption reason and the
            # reclaim time as deadline; the VM then vanishes. Ray marks the death as preempted
            # when a node draining for preemption dies after its deadline.
            deadline_ms = int(time.time() * 1000) + 300
            accepted, why = ray._raylet.GcsClient(address=cluster.address).drain_node(
                victim,
                autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
                "spot reclaim",
                deadline_ms,
            )
            assert accepted, why
            time.sleep(0.5)
        # Killed outright, like a reclaimed VM: a graceful raylet exit would report its own reason.
        cluster.remove_node(nodes[victim], allow_graceful=False)
        cluster.add_node(num_cpus=1)
        EVENTS["killed"] = True


def node_of(trial) -> str | None:
    """The node of the live actor with the pid of the trial's last result, from the GCS actor
    table (the state API needs a dashboard)."""
    pid = trial.last_result.get("pid")
    for info in ray._private.state.actors().values():
        if info.get("Pid") == pid and info.get("State") == "ALIVE":
            return info["Address"]["NodeID"]
    return None


def checkpoint_iteration(trial) -> int:
    """training_iteration of the trial's latest persisted checkpoint (its own or one PBT cloned)."""
    latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    return latest.metrics["training_iteration"] if latest else 0


def run_with_node_loss(cluster, tmp_path, capsys, preempt: bool) -> tuple[Path, str]:
    """The dqn PBT run with a node killed at iteration 3. Which node a trial lands on is Ray's choice:
    if no trial happened to run on a worker node when the kill was due, the run is repeated (the
    precondition failed, not the code under test), at most twice."""
    for attempt in range(3):
        EVENTS.update(killed=False, lost={}, lost_pid={}, rows_before={}, first_after={}, failures={}, seen=[])
        name = f"ft{attempt}"
        code = cli.run(
            [
                "dqn",
                "--budget",
                "smoke",
                "--samples",
                "3",
                "--set",
                "iterations=6",
                "--address",
                cluster.address,
                "--storage",
                str(tmp_path),
                "--name",
                name,
            ],
            callbacks=[KillNode(at_iteration=3, preempt=preempt)],
        )
        out = capsys.readouterr().out
        assert code == 0, out
        if EVENTS["killed"] and EVENTS["lost"]:
            return tmp_path / name, out
    # The precondition (a trial on a worker node when the kill is due), not the code under test, failed:
    # seen once in 4 full-suite runs here, every trial mapped to one node of the GCS actor table.
    pytest.skip(f"no trial ran on a worker node in 3 runs, so no node could be killed: {EVENTS['seen'][:4]}")


def check_recovery(experiment: Path, out: str):
    assert "FAILED trial" not in out, out
    trials = sorted(p for p in experiment.iterdir() if (p / "result.json").exists())
    assert len(trials) == 3
    for path in trials:
        rows = read_results(str(path))
        assert rows[-1]["training_iteration"] == 6, (path.name, out[-3000:])  # every trial finished
        assert sorted(path.glob("checkpoint_*")), path.name
    by_id = {read_results(str(p))[0]["trial_id"]: p for p in trials}
    for trial_id, rows_before in EVENTS["rows_before"].items():
        assert len(read_results(str(by_id[trial_id]))) >= rows_before  # nothing reported was lost
    for trial_id, checkpoint_iteration in EVENTS["lost"].items():
        first = EVENTS["first_after"][trial_id]
        assert checkpoint_iteration >= 1
        # Restarted from a checkpoint (its own, or one PBT cloned into it) at least as recent as its
        # last one when the node died: not from scratch, nothing trained before the loss undone.
        assert first["iterations_since_restore"] == 1
        assert first["training_iteration"] - 1 >= checkpoint_iteration


@pytest.mark.slow
@pytest.mark.cluster
def test_node_loss_mid_pbt_restores_lost_trials_from_their_checkpoints(cluster, tmp_path, capsys):
    experiment, out = run_with_node_loss(cluster, tmp_path, capsys, preempt=False)
    check_recovery(experiment, out)
    # An ordinary node death counts against max_failures.
    assert all(EVENTS["failures"][trial_id] == 1 for trial_id in EVENTS["lost"]), EVENTS["failures"]


@pytest.mark.slow
@pytest.mark.cluster
def test_spot_preemption_does_not_count_as_a_failure(cluster, tmp_path, capsys):
    assert os.environ.get("RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE", "0") == "0"
    experiment, out = run_with_node_loss(cluster, tmp_path, capsys, preempt=True)
    check_recovery(experiment, out)
    # The trials on the reclaimed node recovered without using up a failure. (A trial that was
    # being placed elsewhere at that moment may see another kind of error.)
    assert all(EVENTS["failures"][trial_id] == 0 for trial_id in EVENTS["lost"]), EVENTS["failures"]


@pytest.mark.slow
@pytest.mark.cluster
def test_workers_import_the_shipped_working_tree(cluster):
    start_ray(cluster.address, 1.0)

    @ray.remote(num_cpus=0)
    def where() -> tuple[str, str, list[str]]:
        import platform as stdlib_platform
        import trainables

        shipped = Path(trainables.__file__).resolve().parent.parent
        return trainables.__file__, stdlib_platform.system(), sorted(p.name for p in shipped.iterdir())

    path, system, shipped = ray.get(where.remote())
    assert "working_dir_files" in path or "_ray_pkg_" in path, path  # not the install, the shipped copy
    assert system  # the standard `platform` still works on workers
    assert {"trainables", "search_spaces", "platform"} <= set(shipped), shipped
    # Code, not history or caches (Ray 2.60 leaves .git out by itself and honours .gitignore too).
    assert not {".git", ".pytest_cache", ".ruff_cache"} & set(shipped), shipped


def finished(experiment: Path, iterations: int) -> dict[str, int]:
    """trial dir -> number of result rows, for trials whose last result is their final iteration."""
    out = {}
    for path in experiment.glob("*/result.json"):
        rows = read_results(str(path.parent))
        if rows and rows[-1]["training_iteration"] == iterations:
            out[path.parent.name] = len(rows)
    return out


def terminated(experiment: Path) -> dict[str, int]:
    """trial dir -> number of result rows, for the trials Tune's experiment state records as finished."""
    # The newest run's file: names carry the run's start time (a resumed run rewrites the old one too).
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except json.JSONDecodeError:  # being written
        return {}
    out = {}
    for trial_json, _ in data["trial_data"]:
        trial = json.loads(trial_json)
        if trial["status"] == "TERMINATED":
            out[trial["relative_logdir"]] = len(read_results(str(experiment / trial["relative_logdir"])))
    return out


# Long enough that the second pair of trials (4 seeds on 2 CPUs) is still running when the first pair
# has finished and the driver is killed.
CRASH_ITERATIONS = 6


@pytest.mark.slow
def test_driver_crash_then_resume_finishes_without_rerunning(own_ray, tmp_path):
    # the driver below starts its own local Ray on both CPUs
    argv = [
        sys.executable,
        "-m",
        "platform.tune",
        "dqn",
        "--budget",
        "smoke",
        "--search",
        "none",
        "--seeds",
        "4",
        "--set",
        f"iterations={CRASH_ITERATIONS}",
        "--storage",
        str(tmp_path),
        "--name",
        "crash",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    experiment = tmp_path / "crash"
    deadline = time.time() + 240
    while not (experiment.exists() and terminated(experiment)) and time.time() < deadline:
        if driver.poll() is not None:
            pytest.fail("the driver ended before it could be killed")
        time.sleep(0.2)
    before = terminated(experiment)  # what Tune had recorded as finished when the driver died
    assert 1 <= len(before) < 4, before
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-experiment
    driver.wait()
    resumed = subprocess.run(argv + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = terminated(experiment)
    assert len(after) == 4 and len(finished(experiment, CRASH_ITERATIONS)) == 4, resumed.stdout[-3000:]
    for trial, rows in before.items():
        assert after[trial] == rows  # finished before the crash: not run again


@pytest.mark.slow
def test_a_trial_that_raises_is_reported_and_the_others_finish(ray_session, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(search_spaces.MODELS, "buggy", "tests.faulty:SPEC")
    code = cli.run(
        [
            "buggy",
            "--budget",
            "smoke",
            "--search",
            "none",
            "--seeds",
            "3",
            "--set",
            "iterations=3",
            "--storage",
            str(tmp_path),
            "--name",
            "bug",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0  # not every trial failed
    failed = [line for line in out.splitlines() if line.startswith("FAILED trial")]
    assert len(failed) == 1, out  # the seed-1 trial, and only it
    assert "RuntimeError" in failed[0], failed[0]
    error_file = Path(failed[0].rsplit("see ", 1)[1])
    assert error_file.exists() and "seed 1 breaks at iteration 2" in error_file.read_text()
    assert len(finished(tmp_path / "bug", 3)) == 2
