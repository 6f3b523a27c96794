"""The tools compared side by side: casstore (its CLI), restic, borg and a plain copy.

Every tool runs as its own processes, one command per version, exactly as a user would run it;
each command's peak RSS comes from ``os.wait4`` on that process. Timings include an ``os.sync``
after the last command, so each tool pays for making its own writes durable.

Fair defaults, stated in the report:
* restic: its default repository (format "stable" = v2, compression auto, always encrypted),
  its default local cache (in the work dir, so it is written and synced like the repo);
* borg: ``borg init --encryption none`` (no crypto, sha256 chunk ids: borg's cheapest mode,
  the closest to casstore, which does not encrypt) and borg's default lz4 compression;
* copy: ``cp`` into a folder (no dedup): the floor for ingest and restore work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RESTIC_PASSWORD = "casstore-bench"


@dataclass
class Measured:
    """One command: wall seconds, the peak RSS (bytes) of its process and the CPU seconds
    (user + system) it and its children used."""

    seconds: float
    max_rss: int
    stdout: str = ""
    cpu_seconds: float = 0.0


# A process's ru_maxrss also counts the memory of the process it was forked from (Linux keeps
# the old mm's high-water mark across exec), so the benchmark's own memory would leak into the
# tools' figures. Each command therefore starts from a tiny parent: GNU time when installed,
# else a bare Python launcher (its ~10 MB are then a floor under every figure).
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
_LAUNCHER = (
    "import os,sys;pid=os.posix_spawnp(sys.argv[2],sys.argv[2:],os.environ);"
    "_,s,r=os.wait4(pid,0);"
    "open(sys.argv[1],'w').write(f'{r.ru_utime+r.ru_stime} {r.ru_maxrss}');"
    "sys.exit(os.waitstatus_to_exitcode(s))"
)
RSS_METHOD = (
    "GNU time %M of each command" if TIME
    else "os.wait4 from a bare Python launcher (figures include its ~10 MB)"
)


def run_measured(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None) -> Measured:
    """Run ``cmd`` from a tiny parent that reports its peak RSS; raise on failure."""
    with tempfile.TemporaryDirectory() as d:
        rss_file = Path(d, "rss")
        if TIME:
            wrapped = [TIME, "-f", "%U %S %M", "-o", str(rss_file), *cmd]
        else:
            wrapped = [sys.executable, "-S", "-c", _LAUNCHER, str(rss_file), *cmd]
        t0 = time.perf_counter()
        p = subprocess.run(wrapped, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
        *cpu, kib = rss_file.read_text().split()[-3:]  # user, system (GNU time), peak KiB
    return Measured(seconds, int(kib) * 1024, p.stdout, sum(float(x) for x in cpu))


def dir_bytes(path: Path) -> int:
    """Apparent size of every file below ``path`` (what the repo holds)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def installed_env(work: Path) -> dict[str, str]:
    """The environment for timing casstore's CLI as an installed package runs: from
    bytecode, which pip compiles at install time (borg, the other Python peer, runs from the
    bytecode its package installed). An editable checkout where PYTHONDONTWRITEBYTECODE is set
    (as in this project's sandbox) would otherwise compile every module it imports from
    source in every command: ~45 ms of a 117 ms ``casstore refs``, ~85 ms of every commit.
    Casstore's modules are compiled once here (untimed) under a private prefix, so the
    source tree stays clean."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CASSTORE_STORE", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    import casstore

    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    str(Path(casstore.__file__).parent)],
                   env=env, check=True, capture_output=True)
    return env


@dataclass
class Tool:
    """How one tool ingests a file as a version and restores a version into a folder."""

    name: str
    work: Path
    env: dict = field(default_factory=lambda: dict(os.environ))
    versions: dict[str, str] = field(default_factory=dict)  # series name -> tool's id

    @property
    def repo(self) -> Path:
        return self.work / f"{self.name}-repo"

    def missing(self) -> str | None:
        """Why the tool cannot run here, or None."""
        return None

    def describe(self) -> str:
        return self.name

    def setup(self) -> None:
        """Create an empty repository (not timed)."""

    def ingest(self, name: str, path: Path) -> list[str]:
        """The command that stores ``path`` as version ``name``."""
        raise NotImplementedError

    def after_ingest(self, name: str, m: Measured) -> None:
        """Record what the ingest command printed (e.g. a snapshot id)."""

    def restore(self, name: str, dest: Path) -> tuple[list[str], Path | None]:
        """The command that writes version ``name`` under ``dest``, and the cwd to run it in."""
        raise NotImplementedError

    def other_commands(self) -> dict[str, list[str]]:
        """More commands over the whole series, run in order after the restore, whose peak
        RSS is reported (not timed against the peers)."""
        return {}

    def stored_bytes(self) -> int:
        return dir_bytes(self.repo)


class CasstoreCLI(Tool):
    encoding: str | None = None  # None: the store's default encoding policy

    def describe(self) -> str:
        from casstore.chunking.encodings import DEFAULT_POLICY

        return ("casstore CLI (`casstore commit` per version, default tensor-aware chunker, "
                f"encoding {self.encoding or DEFAULT_POLICY})")

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "casstore", "--store", str(self.repo), *args]

    def setup(self) -> None:
        self.index = 0
        self.env = installed_env(self.work)
        if self.encoding is not None:  # an init before the timed commits, like `casstore init`
            from casstore import Repository
            from casstore.repo.config import StoreConfig

            repo = Repository(str(self.repo))
            repo.init(StoreConfig(encoding=self.encoding))
            repo.store.close()

    def ingest(self, name: str, path: Path) -> list[str]:
        version = f"1.0.{self.index}"
        self.index += 1
        self.versions[name] = version
        return self._cmd("commit", "series", str(path), "--version", version, "--message", name)

    def restore(self, name: str, dest: Path) -> tuple[list[str], Path | None]:
        return self._cmd("checkout", "series", self.versions[name], "-o", str(dest)), None

    def other_commands(self) -> dict[str, list[str]]:
        pushed, pulled = self.work / f"{self.name}-pushed", self.work / f"{self.name}-pulled"
        return {
            "push (series)": self._cmd("push", str(pushed), "series", "--all"),
            "pull (series)": [sys.executable, "-m", "casstore", "--store", str(pulled), "pull",
                              str(pushed), "series", "--all"],
            "verify --read-data": self._cmd("verify", "--read-data"),
        }


class CasstoreOff(CasstoreCLI):
    """casstore with chunk encodings off: raw chunks, as before issue 13."""

    encoding = "off"

    def other_commands(self) -> dict[str, list[str]]:
        return {}


class Restic(Tool):
    def missing(self) -> str | None:
        return None if shutil.which("restic") else "restic not installed (apt-get install restic)"

    def describe(self) -> str:
        v = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()
        return f"restic {v[1] if len(v) > 1 else '?'} (default repo v2, encrypted, own cache)"

    def setup(self) -> None:
        self.env.update(RESTIC_PASSWORD=RESTIC_PASSWORD, RESTIC_CACHE_DIR=str(self.work / "rc"))
        subprocess.run(
            ["restic", "-r", str(self.repo), "init"], env=self.env, check=True,
            capture_output=True,
        )

    def ingest(self, name: str, path: Path) -> list[str]:
        return ["restic", "-r", str(self.repo), "backup", "--json", "--host", "bench",
                "--tag", name.replace(".", "_"), str(path)]

    def after_ingest(self, name: str, m: Measured) -> None:
        for line in reversed(m.stdout.splitlines()):
            doc = json.loads(line)
            if doc.get("message_type") == "summary":
                self.versions[name] = doc["snapshot_id"]
                return
        raise RuntimeError(f"restic printed no snapshot id for {name}")

    def restore(self, name: str, dest: Path) -> tuple[list[str], Path | None]:
        return (["restic", "-r", str(self.repo), "restore", self.versions[name],
                 "--target", str(dest)], None)


class Borg(Tool):
    encryption = "none"

    def missing(self) -> str | None:
        return None if shutil.which("borg") else "borg not installed (apt-get install borgbackup)"

    def describe(self) -> str:
        v = subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.strip()
        return f"{v} (--encryption {self.encryption}, default lz4 compression)"

    def setup(self) -> None:
        self.env.update(
            BORG_BASE_DIR=str(self.work / "borg-home"),
            BORG_PASSPHRASE="",
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        subprocess.run(
            ["borg", "init", "--encryption", self.encryption, str(self.repo)],
            env=self.env, check=True, capture_output=True,
        )

    def ingest(self, name: str, path: Path) -> list[str]:
        self.versions[name] = name
        return ["borg", "create", f"{self.repo}::{name}", str(path)]

    def restore(self, name: str, dest: Path) -> tuple[list[str], Path | None]:
        dest.mkdir(parents=True, exist_ok=True)
        return ["borg", "extract", f"{self.repo}::{name}"], dest


class Copy(Tool):
    def describe(self) -> str:
        return "plain copy (`cp` into a folder, no dedup)"

    def setup(self) -> None:
        self.repo.mkdir(parents=True)

    def ingest(self, name: str, path: Path) -> list[str]:
        self.versions[name] = f"{name}/{path.name}"
        (self.repo / name).mkdir()
        return ["cp", str(path), str(self.repo / self.versions[name])]

    def restore(self, name: str, dest: Path) -> tuple[list[str], Path | None]:
        dest.mkdir(parents=True, exist_ok=True)
        return ["cp", str(self.repo / self.versions[name]), str(dest)], None


TOOLS: dict[str, type[Tool]] = {"casstore": CasstoreCLI, "casstore-off": CasstoreOff,
                                "restic": Restic, "borg": Borg, "copy": Copy}
