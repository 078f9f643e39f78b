"""Resource requests and device choice: GPU shares packing trials onto one GPU, CPU-only fallback,
env runners as bundles, and results on a storage URI (the code path s3:// and gs:// take)."""

import json
import os

import pytest
import ray
import torch
from ray import tune
from ray.cluster_utils import Cluster

from platform import tune as cli
from platform.experiment import trainable
from tests.conftest import start_local_ray
from trainables import runtime


def plan_for(*argv):
    args = cli.parser().parse_args(list(argv))
    return cli.make_plan(args)


def request(plan) -> dict:
    cls = trainable(plan)
    return cls.default_resource_request(plan.base_config).required_resources


def test_gpu_share_is_requested_per_trial(tmp_path):
    plan = plan_for("dqn", "--gpus-per-trial", "0.25", "--storage", str(tmp_path))
    assert request(plan) == {"CPU": 1.0, "GPU": 0.25}


def test_rllib_trials_ask_for_a_learner_bundle_and_one_bundle_per_env_runner(tmp_path):
    plan = plan_for("ppo", "--cpus-per-trial", "3", "--gpus-per-trial", "0.5", "--storage", str(tmp_path))
    assert plan.base_config["num_env_runners"] == 2
    bundles = trainable(plan).default_resource_request(plan.base_config).bundles
    assert bundles == [{"CPU": 1, "GPU": 0.5}, {"CPU": 1}, {"CPU": 1}]


def test_a_trainable_built_outside_tune_leaves_no_folder_behind():
    """Ray's Trainable without Tune's storage makes an empty log folder in ~/ray_results; test figures,
    benchmarks and A/B arms build trainables so, and must not litter users' result folders."""
    from trainables.rl.qtable import QTableTrainable

    model = runtime.standalone(QTableTrainable, {"seed": 0})
    try:
        assert model.logdir and not os.path.exists(model.logdir)
        assert model.train()["training_iteration"] == 1
    finally:
        model.stop()
    plain = QTableTrainable(config={"seed": 0})  # what standalone prevents
    assert os.path.isdir(plain.logdir) and not os.listdir(plain.logdir)
    plain.stop()
    os.rmdir(plain.logdir)


def test_device_follows_what_ray_gave_the_trial(monkeypatch):
    # On a GPU node (simulated here: CUDA reported visible), a trial given no GPU share stays on the
    # CPU, since Ray does not hide the node's GPUs from it; a trial given a share takes the GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.choose_device("auto", trial_gpus=0.0) == torch.device("cpu")
    assert runtime.choose_device("auto", trial_gpus=0.25) == torch.device("cuda")
    assert runtime.choose_device("auto", trial_gpus=None) == torch.device("cuda")  # outside Tune
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no GPU is visible to this trial"):
        runtime.choose_device("cuda", trial_gpus=0.0)
    assert runtime.choose_device("cpu", trial_gpus=1.0) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        runtime.choose_device("tpu")


class MaxRunning(tune.Callback):
    def __init__(self):
        self.most = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.most = max(self.most, sum(t.status == "RUNNING" for t in trials))


@pytest.mark.slow
@pytest.mark.cluster
def test_four_quarter_gpu_trials_share_one_gpu(tmp_path, capsys):
    """A node with one (logical) GPU and 5 CPUs runs four 0.25-GPU trials at once, never five. On a
    machine without CUDA the trials see no device and train on CPU: the scheduling is what is tested."""
    had_ray = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 5, "num_gpus": 1, "include_dashboard": False})
    try:
        ray.init(address=cluster.address)
        running = MaxRunning()
        code = cli.run(
            [
                "qtable",
                "--budget",
                "smoke",
                "--search",
                "none",
                "--seeds",
                "5",
                "--set",
                "iterations=30",
                "--gpus-per-trial",
                "0.25",
                "--storage",
                str(tmp_path),
                "--name",
                "gpu",
            ],
            callbacks=[running],
        )
        assert code == 0, capsys.readouterr().out
        assert running.most == 4  # the GPU, not the CPUs, limits it
        params = [json.loads(p.read_text()) for p in (tmp_path / "gpu").glob("*/params.json")]
        assert len(params) == 5
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_ray:
            start_local_ray()


@pytest.mark.slow
def test_gpu_request_on_a_cpu_only_cluster_warns_and_runs(ray_session, tmp_path, capsys, caplog):
    assert ray.cluster_resources().get("GPU", 0) == 0
    code = cli.run(
        [
            "qtable",
            "--budget",
            "smoke",
            "--search",
            "none",
            "--gpus-per-trial",
            "0.25",
            "--storage",
            str(tmp_path),
            "--name",
            "nogpu",
        ]
    )
    assert code == 0
    assert "the cluster has no GPU: trials run on CPU" in caplog.text


@pytest.mark.slow
def test_results_on_a_storage_uri_and_resume_there(ray_session, tmp_path, capsys):
    uri = f"file://{tmp_path}/bucket"
    code = cli.run(["qtable", "--budget", "smoke", "--search", "none", "--storage", uri, "--name", "remote"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Results: {uri}/remote" in out or f"Results: {tmp_path}/bucket/remote" in out, out
    assert list((tmp_path / "bucket" / "remote").glob("*/result.json"))
    code = cli.run(
        ["qtable", "--budget", "smoke", "--search", "none", "--storage", uri, "--name", "remote", "--resume"]
    )
    assert code == 0


def test_storage_defaults_to_tunelab_storage(monkeypatch):
    monkeypatch.setenv("TUNELAB_STORAGE", "s3://bucket/runs")
    args = cli.parser().parse_args(["dqn"])
    assert args.storage == "s3://bucket/runs"
    plan = cli.make_plan(args)
    assert plan.storage.is_uri and plan.storage.experiment(plan.name) == f"s3://bucket/runs/{plan.name}"
    assert plan.local_dir is None


def test_a_local_pbt_population_larger_than_the_cores_shares_them(tmp_path):
    import os

    cores = ray.cluster_resources()["CPU"] if ray.is_initialized() else os.cpu_count()
    storage = ("--storage", str(tmp_path))
    assert plan_for("dqn", "--samples", str(int(2 * cores)), *storage).cpus_per_trial == 0.5
    assert plan_for("dqn", "--samples", str(int(cores)), *storage).cpus_per_trial == 1.0  # it fits already
    assert plan_for("dqn", "--samples", str(int(2 * cores)), "--search", "optuna", *storage).cpus_per_trial == 1.0
    assert plan_for("dqn", "--samples", str(int(2 * cores)), "--cpus-per-trial", "1", *storage).cpus_per_trial == 1.0
