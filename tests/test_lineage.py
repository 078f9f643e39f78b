"""Lineage (issue 13, part 1): what was run is recorded before any trial starts."""

import subprocess

from platform import lineage


def git(path, *args):
    subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)


def test_git_state_clean_dirty_and_not_a_checkout(tmp_path):
    assert lineage.git_state(tmp_path) == {"error": "not a git checkout"}
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    clean = lineage.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    assert lineage.source_line({"git": clean}).endswith("(clean)")
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("")
    dirty = lineage.git_state(tmp_path)
    assert dirty["dirty"] and "-x = 1" in dirty["diff"] and "+x = 2" in dirty["diff"]
    assert dirty["untracked"] == ["new.py"]
    assert "WITH UNCOMMITTED CHANGES (2 file(s)" in lineage.source_line({"git": dirty})
    assert lineage.source_line({"git": {"error": "not a git checkout"}}) == "Source: not a git checkout"
