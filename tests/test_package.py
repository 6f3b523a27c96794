"""The package's shape: a pinned public API, no torch on import, imports pointing one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import casstore

PACKAGE = Path(casstore.__file__).parent

PUBLIC = {
    "AlreadyExistsError",
    "BackendError",
    "CasstoreError",
    "CommitResult",
    "ConflictError",
    "CorruptObjectError",
    "Digest",
    "FileEntry",
    "InvalidInputError",
    "Manifest",
    "MetricCondition",
    "MetricRule",
    "MoveResult",
    "NotFoundError",
    "ObjectStore",
    "PermissionDeniedError",
    "Query",
    "RefValue",
    "ReflogEntry",
    "RegressionPolicy",
    "Repository",
    "Split",
    "StoreFormatError",
    "Stats",
    "Target",
    "TensorEntry",
    "TrainingData",
    "TransientBackendError",
    "UnsafePickleError",
    "UnsupportedError",
    "Version",
    "__version__",
    "open_store",
    "parse_condition",
}


def test_public_api_is_pinned():
    assert set(casstore.__all__) == PUBLIC
    for name in casstore.__all__:
        assert hasattr(casstore, name)


def test_import_never_imports_torch():
    code = (
        "import sys, casstore, casstore.cli, casstore.repository, casstore.gc, "
        "casstore.transfer; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Lower layers must not import higher ones (the facade, the CLI, torch integration).
LAYERS = [
    {"errors", "digest"},
    {"layout", "store", "chunking", "versioning"},
    {"manifest", "inputs", "query", "policy", "render"},
    {"objects", "config", "refs", "compare"},
    {"reader", "catalog", "leases", "retention"},
    {"rollback", "gc", "verify"},
    {"repository"},
    {"transfer", "demo", "tune"},
    {
        "cli",
        "cli_refs",
        "cli_maint",
        "cli_remote",
        "cli_tune",
        "cli_serve",
        "torch",
        "serving",
        "serve",
        "testing",
        "__main__",
    },
]


def _layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if module in names:
            return i
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # type-only imports do not count
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("casstore."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("casstore."):
                    out.add(a.name.split(".")[1])
    return out


def test_imports_point_downward():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        mine = _layer(top)
        if mine is None:
            continue
        for dep in _imports(path):
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                problems.append(f"{rel} imports casstore.{dep}")
    assert not problems, problems
