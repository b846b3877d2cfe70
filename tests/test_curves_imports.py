"""nax.curves imports without a cycle, and nothing hides one in a function.

The import graph of the package's modules is read from their source (every ``import``
statement, at any depth), so a function-local import that would close a cycle counts.
"""

import ast
from pathlib import Path

import nax.curves

PACKAGE = Path(nax.curves.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph() -> tuple[dict, list]:
    """Module -> nax.curves modules it imports; and (module, line) of imports inside functions."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    packages = {_module(p) for p in PACKAGE.rglob("__init__.py")}
    graph, local = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from nax.curves import basis`` depends on the module basis
                targets = [f"{node.module}.{a.name}" for a in node.names]
                if node.module not in packages:
                    targets.append(node.module)
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        local.append((name, node.lineno))
        graph[name] = deps
    return graph, local


def test_no_import_cycle_and_no_function_local_imports():
    graph, local = _graph()
    assert local == [], f"function-local imports in nax.curves: {local}"
    packages = {m for m in graph if (PACKAGE.parent.parent / m.replace(".", "/") / "__init__.py").exists()}
    # modules only: a package's __init__ re-exports its modules and no module imports a
    # package (checked), so the packages cannot close a cycle
    assert not any(d in packages for m, ds in graph.items() if m not in packages for d in ds)
    edges = {m: {d for d in ds if d not in packages} for m, ds in graph.items() if m not in packages}
    seen, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError(" -> ".join(stack[stack.index(m) :] + [m]))
        if m in seen:
            return
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            visit(d)
        stack.pop()
        seen.add(m)

    for m in sorted(edges):
        visit(m)
    # the layering of issue 12: maths and format below prediction, prediction below fitting
    # and stopping, the benchmarks on top
    assert "nax.curves.predict" not in edges["nax.curves.calibration"]
    assert "nax.curves.prior" not in edges["nax.curves.calibration"]
    assert edges["nax.curves.prior"] <= {"nax.curves.basis", "nax.curves.calibration"}
    assert "nax.curves.fitting" not in edges["nax.curves.predict"]
    for m in ("nax.curves.fitting", "nax.curves.stopping", "nax.curves.predict"):
        assert not any(d.startswith("nax.curves.bench") for d in edges[m]), m
