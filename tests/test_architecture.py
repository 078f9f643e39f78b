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


# ----------------------------------------------------------------------------- Ray's private names

COMPAT = ROOT / "platform" / "ray_compat.py"
SCANNED = ("platform", "trainables", "bench", "envs", "search_spaces")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _ray_module(name: str) -> bool:
    return name == "ray" or name.startswith("ray.")


def _own_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself: functions, classes, plain names, and self./cls. attributes."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _on_self(node.value):
            out.add(node.attr)
    return out


def _on_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _private_attributes(tree: ast.Module) -> list[tuple[int, str, str]]:
    """(line, name, code) of every `x._name` and getattr/setattr/hasattr(x, "_name") with x not self/cls."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and not _on_self(node.value):
            out.append((node.lineno, node.attr, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not _on_self(node.args[0])
        ):
            out.append((node.lineno, node.args[1].value, ast.unparse(node)))
    return out


def _private_ray_uses(path: pathlib.Path, module=None) -> list[str]:
    """Private Ray names used in one file: an import of a private Ray module or name (or of
    ray.tune.experimental); an attribute starting with "_" read off anything but self or cls
    (super()._x and getattr(x, "_x") included): in a module that imports ray, any; in one that does
    not (it may still be handed Ray objects), one the module does not define itself; and `self._x`
    where _x is a private name of a Ray base class of the enclosing class (`module`: the file
    imported; by default by its name under ROOT)."""
    tree = ast.parse(path.read_text())
    out, imports_ray = [], False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ray_module(alias.name):
                    imports_ray = True
                    if any(_private(p) for p in alias.name.split(".")):
                        out.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _ray_module(node.module):
            imports_ray = True
            parts = node.module.split(".")
            if any(_private(p) for p in parts) or node.module.startswith("ray.tune.experimental"):
                out.append(f"{node.lineno}: from {node.module} import ...")
            out += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if _private(a.name)]
    own = set() if imports_ray else _own_names(tree)
    out += [f"{line}: {code}" for line, name, code in _private_attributes(tree) if name not in own]
    return out + (_ray_base_privates(path, tree, module) if imports_ray else [])


def _ray_base_privates(path: pathlib.Path, tree: ast.Module, module) -> list[str]:
    """`self._x` (read, or a method defined) in a class whose Ray base classes use the name _x."""
    import importlib
    import inspect
    import re

    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
    if not classes:
        return []
    if module is None:
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    out = []
    for node in classes:
        cls = getattr(module, node.name, None)
        ray_bases = [b for b in getattr(cls, "__mro__", ())[1:] if b.__module__.split(".")[0] == "ray"]
        if not ray_bases:
            continue
        theirs = set()
        for base in ray_bases:
            try:
                source = inspect.getsource(base)
            except (OSError, TypeError):
                continue
            theirs |= set(re.findall(r"self\.(_[a-z]\w*)\b", source)) | set(re.findall(r"def (_[a-z]\w*)\(", source))
        for inner in ast.walk(node):
            used = None
            if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id == "self":
                used = inner.attr
            elif isinstance(inner, ast.FunctionDef):
                used = inner.name
            if used in theirs:
                out.append(f"{inner.lineno}: {node.name} uses {used}, a private name of its Ray base classes")
    return out


def test_private_ray_names_only_in_the_compat_module():
    wrong = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != COMPAT:
                wrong += [f"{path.relative_to(ROOT)}:{use}" for use in _private_ray_uses(path)]
    assert not wrong, (
        "private Ray names outside platform/ray_compat.py (wrap each there, with a test in "
        "tests/test_ray_compat.py):\n" + "\n".join(wrong)
    )


def test_the_private_name_check_finds_them(tmp_path):
    """The check above, on the kinds of use it must find."""
    import importlib.util

    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ray.autoscaler._private.util import prepare_config\n"
        "from ray.tune.experiment.trial import _TrialInfo\n"
        "from ray.tune.schedulers import PopulationBasedTraining\n"
        "def f(controller, trial):\n"
        "    controller._schedule_trial_train(trial)\n"
        "class P(PopulationBasedTraining):\n"
        "    def _exploit(self, *args):\n"
        "        self._own = self._trial_state\n"
        "        return super()._exploit(*args)\n"
        "def h(wrapped):\n"
        "    return getattr(wrapped, '_tune_controller', wrapped)\n"
    )
    spec = importlib.util.spec_from_file_location("probe", probe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = _private_ray_uses(probe, module)
    # line 7: overrides Ray's _exploit; 8: reads Ray's _trial_state (not _own); 9: super()._exploit
    assert sorted(int(use.split(":")[0]) for use in found) == [1, 2, 5, 7, 8, 9, 11], found
    # A module without `import ray` may still be handed a Ray object: a private name it does not
    # define itself is reported; its own are not.
    plain = tmp_path / "plain.py"
    plain.write_text(
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "def f(a, replay):\n"
        "    return a._mine, replay.scheduler._policy\n"
    )
    assert [use.split(": ")[1] for use in _private_ray_uses(plain)] == ["replay.scheduler._policy"]
