"""`python -m platform.tune MODEL --show-config`: every config key with its type, default and doc,
grouped as the dataclass groups them; what PBT mutates; what Optuna searches; each budget.
Generated from the config dataclass and the model's spec, never written twice."""

import ast
import dataclasses
import inspect
import textwrap

import optuna

import search_spaces


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """field -> (group, docstring), read from the source of `cls` and its dataclass bases: the string
    after each annotated field, the `# --- group` comment above it (else the class's own name). A
    field named again without a docstring (a changed default) keeps its base's."""
    docs: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        lines, body = source.splitlines(), ast.parse(source).body[0].body
        for node, after in zip(body, body[1:] + [None]):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above = [line.strip() for line in lines[: node.lineno - 1] if line.strip().startswith("# ---")]
            group = above[-1].removeprefix("# ---").strip() if above else klass.__name__
            text = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else ""
            name = node.target.id
            docs[name] = (
                (docs[name][0], docs[name][1]) if name in docs and not text else (group, " ".join(text.split()))
            )
    return docs


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _domain(value) -> str:
    if isinstance(value, list):
        return f"one of {value}"
    if isinstance(value, dict):  # some keys of a schedule
        return ", ".join(f"{k}: {_domain(v)}" for k, v in value.items())
    sampler = type(value.get_sampler()).__name__.lower()
    return f"{value.lower:g} to {value.upper:g}" + (" (log scale)" if "log" in sampler else "")


def _distribution(d: optuna.distributions.BaseDistribution) -> str:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return f"one of {list(d.choices)}"
    step = f", step {d.step:g}" if getattr(d, "step", None) not in (None, 1) else ""
    return f"{d.low:g} to {d.high:g}" + (" (log scale)" if d.log else "") + step


def optuna_distributions(spec: search_spaces.ModelSpec, samples: int = 200) -> dict:
    """Every parameter the define-by-run space suggests (conditional ones included), found by
    sampling it at random."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found: dict = {}
    for _ in range(samples):
        trial = study.ask()
        spec.space.suggest(trial)
        found.update(trial.distributions)
        study.tell(trial, 0.0)
    return dict(sorted(found.items()))


def show_config(model: str) -> str:
    spec = search_spaces.get(model)
    docs = field_docs(spec.config)
    out = [f"{model}: {spec.description}", "config keys (--set KEY=VALUE; dict fields also --set KEY.ENTRY=VALUE):"]
    group = None
    for field in dataclasses.fields(spec.config):
        where, doc = docs.get(field.name, ("", ""))
        if where != group:
            group = where
            out.append(f"  [{group}]")
        kind = getattr(field.type, "__name__", str(field.type))
        out.append(f"    {field.name:24s} {kind:6s} {_default(field)!r:28s} {doc}")
    out.append("PBT mutates (--search pbt, the default), within:")
    out += [f"    {key:24s} {_domain(value)}" for key, value in spec.pbt_mutations.items()]
    out.append("Optuna searches (--search optuna; --search random samples the same space):")
    out += [f"    {key:24s} {_distribution(d)}" for key, d in optuna_distributions(spec).items()]
    out.append("budgets (--budget):")
    for name, budget in spec.budgets.items():
        overrides = ", ".join(f"{k}={v}" for k, v in budget.overrides.items()) or "the defaults above"
        out.append(
            f"    {name:6s} {budget.samples} trials; {overrides}; PBT perturbs every "
            f"{budget.perturbation_interval} iterations, ASHA grace period {budget.grace_period}"
        )
    return "\n".join(out)
