"""The project's `platform` package must not break libraries that use the standard module."""

import subprocess
import sys
from pathlib import Path

import pytest

import platform
from tests.conftest import ROOT


def test_platform_is_ours_and_reexports_the_standard_module():
    assert Path(platform.__file__).parent == ROOT / "platform"
    assert platform.system() == platform._stdlib_platform.system()
    assert platform.python_version() == sys.version.split()[0]
    assert platform.machine()


@pytest.mark.slow
def test_ray_and_torch_import_beside_it_from_the_repo_root():
    # A fresh interpreter at the repo root, as `python -m platform.tune` runs: ours wins on sys.path.
    code = (
        "import platform, ray, torch; "
        "assert platform.__file__.endswith('platform/__init__.py'), platform.__file__; "
        "print(platform.system(), platform.uname().machine, torch.__version__, ray.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == platform.system()
