"""The layout's rules, checked over the source with `ast`: floors import only downwards, no import
circles, Ray's private names only in the compat module, Tune's result files read only by the results
layer. Each failure names the file and the line to move."""

import ast
import importlib.util
import pathlib
import re

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


# Tune writes these files (platform/callbacks.py holds its writers); only the results layer reads them
# (ray_compat names Tune's file layout where it checks it against Ray's source).
TUNE_FILES = re.compile(r"(?<![\w.])(result\.json|progress\.csv|experiment_state)")
MAY_NAME_TUNE_FILES = {ROOT / "platform" / name for name in ("results.py", "callbacks.py", "ray_compat.py")}


def source_files() -> list[pathlib.Path]:
    """Every module of the project and its benchmarks (the tests read Tune's files on purpose: to
    check what was written independently of the code that reads it)."""
    return [*modules().values(), *sorted((ROOT / "bench").rglob("*.py"))]


def test_tunes_result_files_are_read_only_by_the_results_layer():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in source_files()
        if path not in MAY_NAME_TUNE_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TUNE_FILES.search(line)
    ]
    assert not found, "read Tune's results through platform/results.py instead:\n" + "\n".join(found)


def is_module(name: str) -> bool:
    """Whether the dotted `name` is a module or package, found on the file system without importing
    anything (importing ray or torch here would make this test slow)."""
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0]) if parts[0] != "platform" else None
    except (ImportError, ValueError):
        return False
    if parts[0] == "platform":  # the project's package, whatever sys.modules holds
        locations = [str(ROOT / "platform")]
    elif spec is None:
        return False
    else:
        locations = list(spec.submodule_search_locations or [])
        if len(parts) == 1:
            return True
    for part in parts[1:]:
        found = []
        for location in locations:
            folder = pathlib.Path(location)
            if (folder / part / "__init__.py").exists() or (folder / part).is_dir():
                found.append(str(folder / part))
            elif part == parts[-1] and ((folder / f"{part}.py").exists() or list(folder.glob(f"{part}.*.so"))):
                return True
        if not found:
            return False
        locations = found
    return True


def module_names(tree: ast.Module) -> dict[str, str]:
    """Names the file binds to a module at module level: {name: module}."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if is_module(f"{node.module}.{alias.name}"):
                    out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def local_names(function) -> list[tuple[str, int]]:
    """(name, line) of every parameter and local binding of a function (nested scopes included)."""
    args = function.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg, args.kwarg))]
    out = [(a.arg, a.lineno) for a in params]
    declared = {n for node in ast.walk(function) if isinstance(node, ast.Global | ast.Nonlocal) for n in node.names}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.append((node.id, node.lineno))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.append((node.name, node.lineno))
        elif isinstance(node, ast.arg) and node not in params:
            out.append((node.arg, node.lineno))  # a nested function's or lambda's parameter
    return [(name, line) for name, line in out if name not in declared]


def test_no_local_name_shadows_an_imported_module():
    """A parameter or local named like a module the file imports hides that module in the whole
    function (al_compare's `strategies` list once broke six tests this way)."""
    wrong = []
    for path in source_files():
        tree = ast.parse(path.read_text())
        imported = module_names(tree)
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            for name, line in local_names(function):
                if name in imported:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {name!r} shadows the module {imported[name]}")
    assert not wrong, "rename the local (or the import):\n" + "\n".join(sorted(set(wrong)))
