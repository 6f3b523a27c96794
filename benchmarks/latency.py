"""Command latency: whole-process wall time of the commands people type in an incident or call
in loops (``refs``, ``log``, ``rollback --to``), against ``python -c pass`` (and
``restic version`` when installed) in the same run, on a local store. The gap to
``python -c pass`` is what casstore costs; the median over many runs is reported, each run
interleaved with the others so a burst of load on the machine hits them alike.

    python -m benchmarks.latency --runs 21 [--no-instructions] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.peers import installed_env, run_measured

TARGET_MS = 120.0
"""Light commands: whole-process median on this machine."""
RECORDS_FLOOR = "python -c 'import casstore.records'"
PYDANTIC_FLOOR = "python -c 'pydantic: import + one model'"
"""Shown where pydantic is installed: what every command paid before casstore's records moved
from pydantic to msgspec (its import plus building one model's validator)."""


def _store(work: Path) -> Path:
    from casstore import Repository

    store = work / "store"
    repo = Repository(str(store))
    src = work / "in"
    src.mkdir()
    for i in range(3):
        (src / "config.json").write_text(json.dumps({"step": i}))
        (src / "weights.bin").write_bytes(os.urandom(1 << 20))
        repo.commit("m", [src], metrics={"loss": 1.0 / (i + 1)})
    return store


def run(runs: int = 21, workdir: Path | None = None, *, instructions: bool = True) -> dict:
    work = Path(tempfile.mkdtemp(prefix="latency-", dir=workdir))
    try:
        store = _store(work)
        env = installed_env(work)  # from bytecode, as an installed package runs
        py = sys.executable
        cas = [py, "-m", "casstore", "--store", str(store)]
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import casstore.cli'": [py, "-c", "import casstore.cli"],
            # what casstore's own record layer costs (msgspec)
            RECORDS_FLOOR: [py, "-c", "import casstore.records"],
            "casstore refs m": [*cas, "refs", "m"],
            "casstore log m -n 5": [*cas, "log", "m", "-n", "5"],
            "casstore rollback m --to": [*cas, "rollback", "m", "--to", "1.0.{i}"],
        }
        if importlib.util.find_spec("pydantic"):  # for comparison: the models' old library
            commands[PYDANTIC_FLOOR] = [py, "-c", "from pydantic import BaseModel\n"
                                        "class A(BaseModel):\n    x: int\nA(x=1)"]
        if shutil.which("restic"):
            commands["restic version"] = ["restic", "version"]
        samples: dict[str, list[float]] = {k: [] for k in commands}
        rss: dict[str, int] = dict.fromkeys(commands, 0)
        for i in range(runs + 1):
            for name, cmd in commands.items():
                m = run_measured([c.replace("{i}", str(i % 2)) for c in cmd], env=env)
                if i:  # the first round warms the page cache and .pyc files
                    samples[name].append(m.seconds * 1000)
                    rss[name] = max(rss[name], m.max_rss)
        base = statistics.median(samples["python -c pass"])
        counted = (_instructions(commands, env, py) if instructions and shutil.which("valgrind")
                   else {})
        rows = {
            name: {
                "median_ms": round(statistics.median(s), 1),
                "p90_ms": round(sorted(s)[int(0.9 * (len(s) - 1))], 1),
                "min_ms": round(min(s), 1),
                "minus_python_ms": round(statistics.median(s) - base, 1),
                "peak_rss": rss[name],
            }
            for name, s in samples.items()
        }
        return {"runs": runs, "target_ms": TARGET_MS, "commands": rows,
                "instructions": counted}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _instructions(commands: dict[str, list[str]], env: dict, py: str) -> dict[str, int]:
    """Instructions each process executes (valgrind's callgrind): unlike wall time, the same
    on a loaded machine, so they show where the time goes and what bounds a miss."""
    probes = {k: v for k, v in commands.items() if k != "restic version"}
    out = {}
    for name, cmd in probes.items():
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            *[c.replace("{i}", "0") for c in cmd]], env=env,
                           capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", p.stderr)
        if m:
            out[name] = int(m.group(1))
    return out


def render(d: dict) -> list[str]:
    rows = ["| command | median ms | p90 ms | min ms | median - python ms | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, r in d["commands"].items():
        rows.append(f"| `{name}` | {r['median_ms']} | {r['p90_ms']} | {r['min_ms']} | "
                    f"{r['minus_python_ms']} | {r['peak_rss'] / 2**20:.0f} |")
    ins = d.get("instructions") or {}
    base = ins.get("python -c pass")
    if base:
        rows += ["", "| process | instructions (callgrind) | x `python -c pass` |",
                 "|---|---:|---:|"]
        rows += [f"| `{k}` | {v:,} | {v / base:.1f} |" for k, v in ins.items()]
    return rows + ["", f"{d['runs']} interleaved runs of each whole process on a local store "
                   f"(3 versions), from bytecode; target: light commands <= "
                   f"{d['target_ms']:g} ms median. The wall times swing with the machine's load; "
                   "the gap to `python -c pass` in the same run is what casstore costs."]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--no-instructions", action="store_true",
                    help="skip the callgrind instruction counts (slow)")
    ap.add_argument("--markdown", action="store_true", help="print the table, not JSON")
    a = ap.parse_args()
    d = run(a.runs, instructions=not a.no_instructions)
    print("\n".join(render(d)) if a.markdown else json.dumps(d, indent=2))
