"""Every cluster YAML passes Ray's validator and the checks the schema cannot make."""

from pathlib import Path

import pytest
import ray
import yaml

from platform import clusters
from tests.conftest import ROOT

YAMLS = sorted((ROOT / "clusters").glob("*.yaml"))


def test_the_clusters_we_document_exist():
    assert {p.name for p in YAMLS} >= {"gpu.yaml", "gcp-gpu.yaml", "cpu.yaml"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_is_valid(path):
    assert clusters.problems(path) == []
    config = yaml.safe_load(path.read_text())
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")


def mutated(tmp_path, name: str, change) -> Path:
    config = yaml.safe_load((ROOT / "clusters" / name).read_text())
    change(config)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(config))
    return out


def workers(config: dict) -> list[dict]:
    return [v for k, v in config["available_node_types"].items() if k != config["head_node_type"]]


def on_demand(config):
    workers(config)[0]["node_config"].pop("InstanceMarketOptions")


def old_ray(config):
    config["docker"]["image"] = "rayproject/ray-ml:2.9.0-py310-gpu"


def list_scheduling(config):  # the form in Ray's own GCP example
    workers(config)[0]["node_config"]["scheduling"] = [{"preemptible": True}]


def local_storage(config):
    config["docker"]["run_options"] = [o for o in config["docker"]["run_options"] if "TUNELAB_STORAGE" not in o]


def no_install(config):
    config["setup_commands"] = []


def syncs_runs(config):
    config["rsync_exclude"] = ["**/__pycache__"]


def unknown_field(config):
    config["max_wrokers"] = 3


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("gpu.yaml", on_demand, "is not on spot"),
        ("gpu.yaml", old_ray, f"is not Ray {ray.__version__}"),
        ("gcp-gpu.yaml", list_scheduling, "scheduling must be an object"),
        ("gpu.yaml", local_storage, "results must not stay on the nodes"),
        ("cpu.yaml", no_install, "setup_commands must install the project"),
        ("gpu.yaml", syncs_runs, "rsync_exclude must leave out .git"),
        ("gpu.yaml", unknown_field, "Ray's validator rejects it"),
    ],
)
def test_each_check_catches_its_problem(tmp_path, name, change, message):
    found = clusters.problems(mutated(tmp_path, name, change))
    assert any(message in line for line in found), found


def test_check_command_exit_status(tmp_path, capsys):
    assert clusters.main([str(p) for p in YAMLS]) == 0
    assert clusters.main([str(mutated(tmp_path, "gpu.yaml", on_demand))]) == 1
    assert "is not on spot" in capsys.readouterr().out
