"""Puts the project's `platform` package in place of the standard module, and starts one local Ray.

pytest (and everything it imports) has already imported the standard `platform`; our package
re-exports its names, so swapping the module keeps `platform.system()` working for everyone.
"""

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
    """One local Ray for the whole session (Ray 2.60 has no local_mode). The multi-node tests
    (test_0_multinode.py) stop it for their own clusters and start it again when they are done."""
    ray = start_local_ray()
    yield ray
    ray.shutdown()
