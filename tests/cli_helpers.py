"""Run the ``casstore`` command: in-process through ``casstore.cli.main`` (the default, quick),
or for real in a subprocess (``subprocess=True``: the end-to-end tests)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess as sp
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casstore.cli import main


@dataclass
class Result:
    code: int
    out: Any
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(*args: str | Path, store: str | Path | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, input: str | None = None, timeout: float = 120,
        binary: bool = False, subprocess: bool = False) -> Result:
    """``casstore ARGS [--store STORE]`` with ``$CASSTORE_STORE`` unset, then ``env`` applied."""
    argv = [*map(str, args)] + ([] if store is None else ["--store", str(store)])
    if subprocess:
        return _run_subprocess(argv, env, cwd, input, timeout, binary)
    stdin = io.TextIOWrapper(io.BytesIO((input or "").encode()), encoding="utf-8")
    out, err = io.BytesIO(), io.BytesIO()
    out_text = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    err_text = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    with _environment(env, cwd), contextlib.redirect_stdout(out_text), \
            contextlib.redirect_stderr(err_text), _stdin(stdin):
        code = main(argv)
    out_text.flush()
    err_text.flush()
    data = out.getvalue()
    text = err.getvalue().decode(errors="replace")
    return Result(code, data if binary else data.decode(errors="replace"), text)


def _run_subprocess(argv: list[str], env: dict[str, str] | None, cwd: Path | None,
                    input: str | None, timeout: float, binary: bool) -> Result:
    e = dict(os.environ)
    e.pop("CASSTORE_STORE", None)
    e.update(env or {})
    p = sp.run([sys.executable, "-m", "casstore", *argv], capture_output=True, env=e, cwd=cwd,
               input=None if input is None else input.encode(), timeout=timeout)
    out = p.stdout if binary else p.stdout.decode()
    return Result(p.returncode, out, p.stderr.decode(errors="replace"))


@contextlib.contextmanager
def _environment(env: dict[str, str] | None, cwd: Path | None) -> Iterator[None]:
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.pop("CASSTORE_STORE", None)
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _stdin(stream: io.TextIOWrapper) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


def committed_store(tmp_path: Path, versions: int, *, promote: bool = False,
                    **tensors: Any) -> Path:
    """A store at ``tmp_path/store`` with ``versions`` fine-tunes of one base committed as
    model ``m`` (1.0.0, 1.0.1, ...) by the CLI; ``promote``: ``current`` follows each commit
    (the first commit sets it either way). ``tensors``: options of ``series.tensors``."""
    from tests import series

    store = tmp_path / "store"
    base = series.tensors(n=3, **tensors)
    for i in range(versions):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        assert run("commit", "m", f, store=store).code == 0
        if promote and i:
            assert run("promote", "m", f"1.0.{i}", store=store).code == 0
    return store
