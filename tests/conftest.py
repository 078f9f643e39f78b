"""Puts the project's `platform` package in place of the standard module, and starts one local Ray.

pytest (and everything it imports) has already imported the standard `platform`; our package
re-exports its names, so swapping the module keeps `platform.system()` working for everyone.
"""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.modules.pop("platform", None)
import platform  # noqa: E402  (the project's package, now first on sys.path)

assert Path(platform.__file__).resolve().parent == ROOT / "platform", platform.__file__
assert platform.system(), "platform.system() must keep working"


def pytest_collection_modifyitems(config, items):
    """Tests that bring their own Ray run before anything starts the session's local Ray:

    - marked `cluster` first: after a whole suite had used the in-process local Ray, the node of a
      trial's actor could not be told reliably from the GCS table of a new ray.cluster_utils.Cluster
      (two fresh-clone CI runs), while it always could in a fresh process;
    - then those using `own_ray` (a driver in a subprocess with its own local Ray): with no session
      Ray yet, there is none to stop before each of them and start again after (a few seconds each).

    Here, not in file names, so no file's name orders the suite. A stable sort: every other test
    keeps its place."""

    def group(item) -> int:
        if item.get_closest_marker("cluster") is not None:
            return 0
        return 1 if "own_ray" in item.fixturenames else 2

    items.sort(key=group)


RAY_FIXTURES = ("ray_session", "own_ray")


def pytest_runtest_setup(item):
    """The quick loop (`pytest -m "not slow"`) stays quick: a test that asks for a Ray must say so."""
    wants = [name for name in RAY_FIXTURES if name in item.fixturenames]
    if wants and item.get_closest_marker("slow") is None:
        pytest.fail(
            f"{item.nodeid} uses {wants[0]} (it starts Ray) but is not marked slow: add @pytest.mark.slow",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _ray_only_in_slow_tests(request):
    """Fails a test not marked slow that started Ray itself (through the CLI, say): it belongs to the
    slow suite, and the quick loop must not pay for a Ray start."""
    ray = sys.modules.get("ray")
    before = ray is not None and ray.is_initialized()
    yield
    ray = sys.modules.get("ray")
    if not before and ray is not None and ray.is_initialized() and request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} started Ray but is not marked slow: add @pytest.mark.slow", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Synthetic data cached per test session, never in the user's home."""
    os.environ["TUNELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def start_local_ray():
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (Ray 2.60 has no local_mode), for tests marked slow only
    (pytest_runtest_setup refuses the others). The tests marked cluster stop it for their own
    clusters and start it again when they are done."""
    ray = start_local_ray()
    yield ray
    ray.shutdown()


def run_cli(capsys, *argv, callbacks=None) -> tuple[int, str, str]:
    """`python -m platform.tune ARGV` in this process: (exit code, stdout, stderr)."""
    from platform import tune

    code = tune.run(list(argv), callbacks=callbacks)
    out, err = capsys.readouterr()
    return code, out, err


def read_results(trial_dir: str | Path) -> list[dict]:
    """The rows of a trial's result.json (one per reported iteration); [] before the first."""
    path = Path(trial_dir) / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trial_dirs(experiment: Path) -> list[Path]:
    """The experiment's trial directories that have a result file, sorted by name."""
    return sorted(p for p in Path(experiment).iterdir() if p.is_dir() and (p / "result.json").exists())


def trial_results(experiment: Path) -> list[list[dict]]:
    """Every trial's result rows, in trial_dirs order."""
    return [read_results(path) for path in trial_dirs(experiment)]


@pytest.fixture
def own_ray():
    """For a test whose driver starts its own local Ray on both CPUs: pauses the session's, if it has
    started (pytest_collection_modifyitems runs these tests before it does)."""
    import ray

    had_ray = ray.is_initialized()
    ray.shutdown()
    yield
    if had_ray:
        start_local_ray()
