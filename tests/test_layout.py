"""The package's layout: the layers import only downwards (no import cycle except the
registry's deliberate self-registration) and no module grows past ~400 lines outside the
scratch framework's fast kernels."""
from __future__ import annotations

import ast
from pathlib import Path

import denoise

ROOT = Path(denoise.__file__).parent
#: The one deliberate cycle: the registry imports the model modules (to register them),
#: which import the registry's decorators.
ALLOWED = {"denoise.models.registry", "denoise.models._builtin"}
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every denoise module ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("denoise"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("denoise"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for t in _imports(path):
            while t and t not in modules:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name and not name.startswith(t + ".") and t != "denoise":
                targets.add(t)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_but_the_registry():
    for cycle in _cycles(_graph()):
        # the registry cycle: registry -> _builtin -> model modules -> registry
        assert ALLOWED <= set(cycle) and all(m.startswith("denoise.models.") for m in cycle), cycle


def test_the_lower_layers_do_not_import_the_upper_ones():
    upper = {"core": ("denoise.models", "denoise.inference", "denoise.training", "denoise.evaluation",
                      "denoise.cli", "denoise.ee559", "denoise.web"),
             "models": ("denoise.inference", "denoise.training", "denoise.evaluation", "denoise.cli",
                        "denoise.ee559"),
             "inference": ("denoise.training", "denoise.evaluation", "denoise.cli", "denoise.ee559"),
             "training": ("denoise.evaluation", "denoise.cli", "denoise.ee559"),
             "evaluation": ("denoise.cli", "denoise.ee559")}
    core = {"denoise.errors", "denoise.utils", "denoise.io", "denoise.noise", "denoise.metrics",
            "denoise.estimate", "denoise.symmetries", "denoise.tiling"}
    for module, targets in _graph().items():
        layer = ("core" if module in core else
                 next((k for k in ("models", "inference", "training", "evaluation")
                       if module.startswith(f"denoise.{k}")), None))
        if layer is None:
            continue
        bad = sorted(t for t in targets if t.startswith(upper[layer]))
        if layer == "core" and module == "denoise.tiling":
            bad = [t for t in bad if t != "denoise.models.base"]  # the contract it tiles by
        assert not bad, f"{module} ({layer}) imports {bad}"


def test_no_module_over_about_400_lines_outside_the_scratch_kernels():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES
            and "scratch/kernels" not in str(p)}
    assert not long, long
