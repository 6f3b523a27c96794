"""Run the real ``casstore`` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    code: int
    out: Any
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(*args: str | Path, store: str | Path | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, input: str | None = None, timeout: float = 120,
        binary: bool = False) -> Result:
    e = dict(os.environ)
    e.pop("CASSTORE_STORE", None)
    if env:
        e.update(env)
    cmd = [sys.executable, "-m", "casstore", *map(str, args)]
    if store is not None:
        cmd += ["--store", str(store)]
    p = subprocess.run(cmd, capture_output=True, env=e, cwd=cwd,
                       input=None if input is None else input.encode(), timeout=timeout)
    out = p.stdout if binary else p.stdout.decode()
    return Result(p.returncode, out, p.stderr.decode(errors="replace"))
