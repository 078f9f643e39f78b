"""What was run: written to the experiment folder before any trial starts (issue 13, part 1).

`lineage.json` holds the command line, the git commit and the diff of uncommitted changes (or "not
a git checkout"), package versions, Python, the machine's CPU and GPUs, the seeds and the resolved
base config. A resumed run adds `lineage-resume-N.json`. Recording never fails a run: a problem
becomes an "error" entry in the file, and git gets a few seconds at most.
"""

import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from platform.results import LINEAGE, Folder
from trainables.config import to_dict

PACKAGES = ("ray", "torch", "numpy", "gymnasium", "optuna", "scipy", "pandas")
FILE = LINEAGE
GIT_TIMEOUT_S = 5


def git_state(path: Path) -> dict:
    """{"commit", "dirty", "diff", "untracked"} of the checkout holding `path`, or {"error": ...}."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return {"error": "not a git checkout"}
    try:
        diff = git("diff", "HEAD")
        untracked = [f for f in git("ls-files", "--others", "--exclude-standard").splitlines() if f]
    except (OSError, subprocess.SubprocessError) as err:
        return {"commit": commit, "error": f"git diff failed: {err}"}
    return {"commit": commit, "dirty": bool(diff or untracked), "diff": diff, "untracked": untracked}


def machine() -> dict:
    import platform as std_platform  # the project's package re-exports the standard module's names

    out = {"python": sys.version, "os": std_platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            out["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        out["cpu"] = std_platform.processor()
    try:
        import torch

        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # a broken CUDA install must not fail the run
        out["gpus"] = f"unknown: {err}"
    return out


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def record(plan, argv: list[str], root: Path, resume: bool = False) -> dict:
    """Writes the lineage of the planned run into its experiment folder; returns what it wrote."""
    seeds = list(range(plan.config.seed, plan.config.seed + plan.seeds))
    info = {
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["python", "-m", "platform.tune", *argv],
        "cwd": os.getcwd(),
        "resume": resume,
        "git": git_state(root),
        "packages": versions(),
        "machine": machine(),
        "model": plan.model,
        "search": plan.search,
        "samples": plan.samples,
        "seeds": seeds,
        "vary_data": plan.vary_data,
        "base_config": to_dict(plan.config),
    }
    try:
        _write(plan.storage.experiment(plan.name), json.dumps(info, indent=1, default=str))
    except Exception as err:  # storage trouble shows up in Tune itself; lineage never fails the run
        info["error"] = f"not written: {err}"
    return info


def _write(experiment: str, text: str) -> None:
    """lineage.json (or lineage-resume-N.json) in the experiment folder, local or s3:// / gs://."""
    folder = Folder(experiment)
    name, number = FILE, 1
    while folder.exists(name):
        name, number = f"lineage-resume-{number}.json", number + 1
    folder.write(name, text.encode())


def source_line(info: dict) -> str:
    """One line for the summary: the commit, and whether the tree was dirty."""
    git = info.get("git", {})
    if "commit" not in git:
        return f"Source: {git.get('error', 'unknown')}"
    if git.get("dirty"):
        changed = len(git.get("untracked", [])) + git.get("diff", "").count("\ndiff --git") + bool(git.get("diff"))
        return f"Source: {git['commit'][:12]} WITH UNCOMMITTED CHANGES ({changed} file(s); the diff is in {FILE})"
    return f"Source: {git['commit'][:12]} (clean)"
