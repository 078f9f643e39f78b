"""`python -m platform.clusters [YAML ...]`: checks cluster launcher YAMLs before a `ray up`.

Ray's own validator (prepare_config, then the JSON schema) first, then what the schema cannot
know: worker nodes on spot, the image's Ray version equal to the installed one, the project
installed from the synced working tree, results on object storage, runs and git history kept
out of the sync, an idle timeout. Prints one line per problem; exit status 1 if there is any.
"""

import copy
import re
import sys
from pathlib import Path

import ray
import yaml

from platform.ray_compat import validate_cluster_config

PROJECT_DIR = "/home/ray/tunelab"
REMOTE_STORAGE = re.compile(r"TUNELAB_STORAGE=(s3|gs)://\S+")


def problems(path: str | Path) -> list[str]:
    name = Path(path).name
    try:
        config = yaml.safe_load(Path(path).read_text())
        validate_cluster_config(copy.deepcopy(config))
    except Exception as err:  # Ray's validator raises ValueError, jsonschema errors, KeyError...
        return [f"{name}: Ray's validator rejects it: {type(err).__name__}: {str(err).splitlines()[0]}"]
    out = []
    provider = config["provider"]["type"]
    head = config["head_node_type"]
    for node_type, spec in config["available_node_types"].items():
        if node_type == head:
            continue
        node = spec.get("node_config", {})
        if provider == "aws" and node.get("InstanceMarketOptions", {}).get("MarketType") != "spot":
            out.append(
                f"{name}: worker type {node_type} is not on spot: set InstanceMarketOptions: {{MarketType: spot}}"
            )
        if provider == "gcp":
            scheduling = node.get("scheduling")
            if not isinstance(scheduling, dict):
                out.append(
                    f"{name}: worker type {node_type}: scheduling must be an object "
                    f"(provisioningModel: SPOT), got {scheduling!r}"
                )
            elif scheduling.get("provisioningModel") != "SPOT" and not scheduling.get("preemptible"):
                out.append(f"{name}: worker type {node_type} is not on spot: set scheduling.provisioningModel: SPOT")
            if "resources" not in spec:
                out.append(f"{name}: worker type {node_type} needs explicit resources (CPU, GPU) on GCP")
    docker = config.get("docker", {})
    images = [docker.get(k) for k in ("image", "head_image", "worker_image") if docker.get(k)]
    if not images:
        out.append(f"{name}: no docker image; use rayproject/ray:{ray.__version__}-py311-gpu (or -cpu)")
    for image in images:
        tag = image.rpartition(":")[2]
        if not tag.startswith(ray.__version__ + "-") and tag != ray.__version__:
            out.append(
                f"{name}: image {image} is not Ray {ray.__version__} (installed here); "
                f"use rayproject/ray:{ray.__version__}-py311-gpu"
            )
    mounts = config.get("file_mounts", {})
    if mounts.get(PROJECT_DIR) != ".":
        out.append(f"{name}: file_mounts must sync the working tree: {PROJECT_DIR}: .")
    setup = " ; ".join(config.get("setup_commands", []))
    if not re.search(rf"pip install .*-e \"?{re.escape(PROJECT_DIR)}", setup):
        out.append(f"{name}: setup_commands must install the project: pip install -e {PROJECT_DIR}")
    if not any(REMOTE_STORAGE.search(option) for option in docker.get("run_options", [])):
        out.append(
            f"{name}: results must not stay on the nodes: set TUNELAB_STORAGE=s3://... or gs://... "
            "in docker.run_options"
        )
    excluded = " ".join(config.get("rsync_exclude", []))
    for needed in (".git", "ray_results"):
        if needed not in excluded:
            out.append(f"{name}: rsync_exclude must leave out {needed}")
    if not config.get("idle_timeout_minutes"):
        out.append(f"{name}: set idle_timeout_minutes so idle GPU workers are released")
    return out


def main(paths: list[str]) -> int:
    if {"-h", "--help"} & set(paths):
        print(f"usage: python -m platform.clusters [YAML ...]\n\n{__doc__.strip()}")
        return 0
    paths = paths or sorted(str(p) for p in Path("clusters").glob("*.yaml"))
    found = [line for path in paths for line in problems(path)]
    print("\n".join(found) if found else f"{len(paths)} cluster YAMLs ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
