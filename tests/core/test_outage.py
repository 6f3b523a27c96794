"""Reads of mutable state during a store outage: on every backend behind a store that fails
every call, and on moto's S3 behind the fault proxy, which refuses every connection (new and
pooled) inside ``outage()``.

Listing versions, reading a ref (``show``, ``refs.get``), ``log``, ``refs`` and ``models``
must fail with a clear :class:`~casstore.errors.BackendError` (CLI: exit 7, one line, no
traceback) and never answer from memory, both through a Repository that had already read
everything and through a new one; once the proxy is back, they answer the bucket's truth,
including what another writer changed during the outage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from casstore import Repository
from casstore.errors import BackendError, TransientBackendError
from casstore.store import open_store
from casstore.testing.faultproxy import FaultProxy
from casstore.testing.s3 import BUCKET
from casstore.testing.stores import FaultInjectingStore
from tests.cli_helpers import run


@pytest.fixture
def proxy(moto_s3: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_s3, rate=0.0) as px:  # no faults: only the outage
        yield px


def _weights(folder: Path, fill: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "w.bin"
    path.write_bytes(bytes([fill]) * 5000)
    return path


def _reads(repo: Repository) -> dict[str, object]:
    """What a user reads of the store's mutable state, as plain values."""
    return {
        "versions": [v.version for v in repo.versions("m")],
        "refs.get": repo.refs.get("m", "prod").describe(),
        "show @prod": repo.get_version("m", "@prod").version,
        "show prod": repo.get_version("m", "prod").version,
        "latest": repo.get_version("m", "latest").version,
        "log": [v.version for v in repo.log("m")],
        "refs": sorted(repo.refs.list("m")),
        "models": repo.models(),
    }


def _read_calls(repo: Repository) -> dict[str, object]:
    return {
        "versions": lambda: repo.versions("m"),
        "refs.get": lambda: repo.refs.get("m", "prod"),
        "show @prod": lambda: repo.get_version("m", "@prod"),
        "show prod": lambda: repo.get_version("m", "prod"),
        "show 1.0.0": lambda: repo.get_version("m", "1.0.0"),
        "latest": lambda: repo.get_version("m", "latest"),
        "log": lambda: repo.log("m"),
        "refs": lambda: repo.refs.list("m"),
        "reflog": lambda: repo.refs.reflog("m"),
        "models": lambda: repo.models(),
        "query": lambda: repo.query("m"),
        "resolve": lambda: repo.resolve("m", "prod"),
    }


def test_no_mutable_read_answers_from_memory(store_url: str, tmp_path: Path) -> None:
    """On every backend: once the store fails every call, each read of refs, the version
    index, the catalog or a listing fails too, although this Repository has read them all
    before (only immutable objects, such as manifests by digest, may be kept)."""
    dead = FaultInjectingStore(open_store(store_url, retry=False), fail_rate=1.0)
    dead.active = False
    repo = Repository(dead)
    for i in range(2):
        repo.commit("m", [_weights(tmp_path / f"v{i}", i)], ref="prod")
    calls = _read_calls(repo)
    for read in calls.values():
        read()
    dead.active = True
    for name, read in calls.items():
        with pytest.raises(TransientBackendError, match="injected fault"):
            read()
            pytest.fail(f"{name} answered while the store failed every call")
    assert dead.injected["fail"] >= len(calls)


@pytest.mark.s3
def test_reads_during_an_outage_fail_and_then_see_the_bucket(
    proxy: FaultProxy, moto_s3: str, tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    old = Repository(url, endpoint_url=proxy.url)
    for i in range(2):
        old.commit("m", [_weights(tmp_path / f"v{i}", i)], ref="prod")
    before = _reads(old)
    assert before["versions"] == [v.version for v in old.versions("m")]
    assert len(before["versions"]) == 2

    with proxy.outage():
        calls = _read_calls(old)
        calls["new Repository"] = lambda: _reads(Repository(url, endpoint_url=proxy.url))
        for name, read in calls.items():
            with pytest.raises(BackendError, match="Could not connect"):
                read()
                pytest.fail(f"{name} answered during the outage")
        # meanwhile another writer, not behind the proxy, changes the bucket
        direct = Repository(url, endpoint_url=moto_s3)
        third = direct.commit("m", [_weights(tmp_path / "v2", 2)], ref="prod").version.version
        direct.set_ref("m", "canary", "1.0.0")

    for repo in (old, Repository(url, endpoint_url=proxy.url)):
        after = _reads(repo)
        assert after["versions"] == [*before["versions"], third]
        assert after["show @prod"] == after["show prod"] == after["latest"] == third
        assert third in str(after["refs.get"])
        assert after["log"][0] == third
        assert after["refs"] == sorted({*before["refs"], "canary"})
        assert after["models"] == ["m"]


@pytest.mark.s3
def test_cli_during_an_outage_one_line_exit_7(
    proxy: FaultProxy, moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    monkeypatch.setenv("CASSTORE_S3_ENDPOINT_URL", proxy.url)
    assert run("commit", "m", _weights(tmp_path / "a", 1), "--ref", "prod", store=url).code == 0
    reads = [("log", "m"), ("show", "m", "@prod"), ("show", "m", "prod"), ("refs", "m"),
             ("models",), ("reflog", "m")]
    for args in reads:  # the in-process CLI now holds pooled connections to the proxy
        assert run(*args, store=url).code == 0, args

    with proxy.outage():
        for args in reads:
            r = run(*args, store=url)
            assert r.code == 7, (args, r)
            assert r.out == ""
            lines = r.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("casstore: error: "), (args, r.err)
            assert "Could not connect" in lines[0] and "Traceback" not in r.err
        r = run("log", "m", "--json", store=url, subprocess=True)
        assert r.code == 7 and "Traceback" not in r.err, r
        assert len(r.err.strip().splitlines()) == 1
        Repository(url, endpoint_url=moto_s3).commit(
            "m", [_weights(tmp_path / "b", 2)], ref="prod")

    r = run("show", "m", "@prod", "--json", store=url)
    assert r.code == 0 and r.json()["semver"] == "1.0.1", r
    log = run("log", "m", "--json", store=url).json()["versions"]
    assert [v["semver"] for v in log] == ["1.0.1", "1.0.0"]


@pytest.mark.s3
def test_the_proxy_is_transparent_without_faults(proxy: FaultProxy, moto_s3: str) -> None:
    """The instrument itself: a HEAD through the proxy keeps the object's length (it once
    said 0, which made ``show`` call a good chunk corrupt)."""
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    open_store(url, endpoint_url=moto_s3).put("k", bytes(range(100)))
    via = open_store(url, endpoint_url=proxy.url)
    assert via.stat("k").size == 100
    assert via.get("k", 0, 1000) == bytes(range(100))
