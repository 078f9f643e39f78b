"""The README is a front door and docs/ holds the rest: the CLI reference is generated and current,
results pages say when and at which commit they were measured, links resolve, no diary words."""

import re
import subprocess
from pathlib import Path

import pytest

from platform import docs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
# Pages that report no measured figure: the generated reference and the guides. Any other page is a
# results page, so a page added later is checked by default.
NOT_RESULTS = {"cli.md", "adding_a_model.md", "reports.md"}
RESULTS_PAGES = [page for page in DOC_PAGES if page.name not in NOT_RESULTS]
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
COMMIT = re.compile(r"commit `([0-9a-f]{7,40})`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Words that date a sentence by when it was written instead of by a date and a commit.
COMMAND = re.compile(r"python -m platform\.(\w+)([^`#\n]*)")
FLAG = re.compile(r"(?<!\S)(--?[A-Za-z][\w-]*)")
REPO_PATH = re.compile(r"`((?:platform|trainables|search_spaces|envs|clusters|bench|tests|docs|\.ci)/[\w./<>-]*)`")
DIARY = re.compile(r"\b(now|earlier|previously|used to)\b", re.IGNORECASE)


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    prose = re.sub(
        r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL
    )  # a shell comment is no heading
    headings = re.findall(r"^#+ (.+)$", prose, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def _problems_in_links(page: Path) -> list[str]:
    out = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # a URL
            continue
        path, _, anchor = target.partition("#")
        linked = page.parent / path if path else page
        if not linked.exists():
            out.append(f"{_name(page)}: link {target} leads nowhere")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            out.append(f"{_name(page)}: link {target}: no heading #{anchor} in {linked.name}")
    return out


def _diary_words(page: Path) -> list[str]:
    return [
        f"{_name(page)}:{number}: {match.group(0)!r} in {line.strip()[:100]!r}"
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for match in DIARY.finditer(line)
    ]


def _commit_exists(sha: str) -> bool:
    done = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=ROOT, capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_cli_reference_is_generated_from_the_current_code(tmp_path):
    current = docs.render()
    problem = docs.check(docs.CLI_MD, current)
    assert problem is None, problem
    # and the check does notice a stale file, naming it
    stale = tmp_path / "cli.md"
    stale.write_text(docs.CLI_MD.read_text().replace("--show-config", "--show-konfig"))
    message = docs.check(stale, current)
    assert message is not None and str(stale) in message and "\n" not in message


def test_cli_reference_covers_every_command():
    text = docs.CLI_MD.read_text()
    for name in docs.commands():
        assert f"## python -m platform.{name}\n" in text, name
    for model in docs.SHOW_CONFIG_MODELS:
        assert f"python -m platform.tune {model} --show-config" in text, model
    assert {"tune", "compare", "report", "ab", "al_compare", "al_report", "clusters"} <= set(docs.commands())


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail to docs/"
    text = README.read_text()
    # the quick start, and the test line as CI (.ci/run) runs it: the same torch pin and extras
    assert "python -m platform.tune dt" in text and "docs/cli.md" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and "python -m pytest" in text
    assert re.findall(r"torch==[\d.]+", text) and set(re.findall(r"torch==[\d.]+", text)) == set(
        re.findall(r"torch==[\d.]+", ci)
    ), "README's torch pin differs from .ci/run's"
    assert '-e ".[test]"' in ci and '-e ".[test]"' in text


@pytest.mark.parametrize("page", RESULTS_PAGES, ids=lambda page: page.name)
def test_results_page_is_dated_and_names_commits_that_exist(page):
    text = page.read_text()
    assert DATE.search(text), f"{page.name}: no date (YYYY-MM-DD) for its figures"
    commits = COMMIT.findall(text)
    assert commits, f"{page.name}: names no commit its figures were measured at (commit `abc1234`)"
    missing = [sha for sha in commits if not _commit_exists(sha)]
    assert not missing, f"{page.name}: commits not in this repository's history: {missing}"


def test_results_pages_exist():
    assert len(RESULTS_PAGES) >= 5, [page.name for page in RESULTS_PAGES]


def test_relative_links_resolve():
    problems = [p for page in [README, *DOC_PAGES] for p in _problems_in_links(page)]
    assert not problems, "\n".join(problems)


def _missing_paths(page: Path) -> list[str]:
    """Files of the repository the page names in backticks (`trainables/rl/dqn.py`) that do not exist."""
    return [
        f"{_name(page)}: {path} does not exist"
        for path in REPO_PATH.findall(page.read_text())
        if "<" not in path and not (ROOT / path).exists()
    ]


def test_named_repository_files_exist():
    problems = [p for page in [README, *DOC_PAGES] for p in _missing_paths(page)]
    assert not problems, "\n".join(problems)


def test_no_development_diary():
    found = [w for page in [README, *DOC_PAGES] for w in _diary_words(page)]
    assert not found, "date figures by day and commit instead:\n" + "\n".join(found)


def _unknown_flags(page: Path, helps: dict[str, str]) -> list[str]:
    """Commands the page shows (`python -m platform.NAME ... --flag`) that do not exist, or flags their
    --help does not list. A continuation line after a backslash is not read."""
    out = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for name, rest in COMMAND.findall(line):
            if name not in helps:
                out.append(f"{_name(page)}:{number}: python -m platform.{name} is no command")
                continue
            out += [
                f"{_name(page)}:{number}: python -m platform.{name} has no {flag}"
                for flag in FLAG.findall(rest)
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[name])
            ]
    return out


def _helps() -> dict[str, str]:
    """Each command's --help, as docs/cli.md holds it (test_cli_reference_* keep that current)."""
    sections = re.split(r"^## python -m platform\.(\w+)\n", docs.CLI_MD.read_text(), flags=re.MULTILINE)
    return {name: text.split("\n## ")[0] for name, text in zip(sections[1::2], sections[2::2])}


def test_documented_commands_and_flags_exist():
    helps = _helps()
    assert {"tune", "report", "compare"} <= set(helps), sorted(helps)
    pages = [README, *(page for page in DOC_PAGES if page.name != "cli.md")]
    problems = [p for page in pages for p in _unknown_flags(page, helps)]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_look_for(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](missing.md), [b](there.md#part-one-x), [c](there.md#part-two) and [d](https://example.org).\n"
        "It is now faster than earlier.\n"
    )
    (tmp_path / "there.md").write_text("# Part one: `x`\n```bash\n# part two\n```\n")
    assert len(_diary_words(page)) == 2
    problems = _problems_in_links(page)
    assert len(problems) == 2 and "missing.md" in problems[0] and "#part-two" in problems[1], problems
    page.write_text("`python -m platform.tune dt --seeds 3 --sedes 3`; python -m platform.nope --x\n")
    helps = {"tune": "usage: python -m platform.tune [--seeds SEEDS]"}
    assert _unknown_flags(page, helps) == [
        "page.md:1: python -m platform.tune has no --sedes",
        "page.md:1: python -m platform.nope is no command",
    ]
    page.write_text("`tests/test_docs.py`, `trainables/nowhere.py`, `envs/` and `train/loss`\n")
    assert _missing_paths(page) == ["page.md: trainables/nowhere.py does not exist"]
    assert not _commit_exists("0" * 40)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert _commit_exists(head)
