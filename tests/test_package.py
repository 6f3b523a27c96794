"""The package's shape: a pinned public API, no torch on import, imports pointing one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import casstore

PACKAGE = Path(casstore.__file__).parent

PUBLIC = {
    # the facade and what it returns
    "Repository",
    "CommitResult",
    "CommitSpec",
    "MoveResult",
    "Stats",
    "Version",
    # options and policies
    "Hooks",
    "LeaseSettings",
    "MetricCondition",
    "MetricRule",
    "Query",
    "RegressionPolicy",
    "RetentionPolicy",
    "StoreConfig",
    "parse_condition",
    # maintenance and other stores
    "GarbageCollector",
    "GcPlan",
    "GcReport",
    "Problem",
    "StoreOutcome",
    "TransferReport",
    "VerifyReport",
    # storage
    "Digest",
    "ObjectStore",
    "open_store",
    # the exception tree
    "AlreadyExistsError",
    "BackendError",
    "CasstoreError",
    "ConflictError",
    "CorruptObjectError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "StoreFormatError",
    "TransientBackendError",
    "UnsafePickleError",
    "UnsupportedError",
    "UntrustedError",
    "__version__",
}


def test_public_api_is_pinned():
    assert set(casstore.__all__) == PUBLIC
    for name in casstore.__all__:
        assert hasattr(casstore, name)


def test_import_never_imports_torch():
    code = (
        "import sys, casstore, casstore.cli, casstore.repository, casstore.ops.gc, "
        "casstore.ops.transfer; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Packages (and the top-level modules among them) in layer order: a module may import its own
# package and any lower layer, never a higher one.
LAYERS = [
    {"errors", "digest", "records", "_lazy", "_own_env"},
    {"store", "chunking"},
    {"repo"},
    {"ops"},
    {"repository"},
    {"tools", "torch"},
    {"serving", "fs"},
    {"cli", "testing", "__main__"},
]


def _layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if module in names:
            return i
    return None


def _imports(path: Path, type_only: bool = False) -> set[str]:
    """Modules of casstore imported by ``path`` (every import, also inside functions)."""
    tree = ast.parse(path.read_text())
    if not type_only:
        for node in ast.walk(tree):  # type-only imports do not count for layering
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("casstore"):
            if node.module == "casstore":
                out.update(f"casstore.{a.name}" for a in node.names)
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("casstore."))
    return out


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.glob("*")}
    tops -= {"__init__", "__pycache__", "py.typed"}
    assert {t for t in tops if _layer(t) is None} == set()


def test_imports_point_downward():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        mine = _layer(top)
        for dep in _imports(path):
            parts = dep.split(".")
            if len(parts) < 2:
                continue
            theirs = _layer(parts[1])
            if theirs is not None and mine is not None and theirs > mine:
                problems.append(f"{rel} imports {dep}")
    assert not problems, problems


def test_no_import_cycles():
    """Between modules, counting every import (type-only and inside functions too)."""
    mods = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for dep in _imports(p, type_only=True):
            while dep and dep not in mods:
                dep = dep.rpartition(".")[0]
            if dep and dep != m and not m.startswith(dep + "."):
                graph[m].add(dep)
    cycles = _cycles(graph)
    assert cycles == [], cycles


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out
