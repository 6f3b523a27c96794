"""Issue 19: live figures, ``casstore watch`` deciding on them, the fallback when a rollback
target fails its health check, and several watchers on one incident.

The end-to-end run with the example HTTP server is in ``test_watch_e2e.py``; here the figures
come from a ``--metrics-cmd`` (a real shell command) or from followers' acknowledgements.
"""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

import pytest

from casstore import Repository
from casstore.ops.regression import MetricRule, RegressionPolicy, WatchPolicy
from casstore.serving.acks import FollowerAck, read_acks, write_ack
from casstore.serving.live import LiveWindow, figures, live_figures, merge
from casstore.testing.children import CONTEXT, child
from tests import series
from tests.cli_helpers import committed_store, run

EXIT_VIOLATION = 8


# -- live figures ------------------------------------------------------------------------
class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_percentiles_within_two_percent_and_merge_exactly():
    rng = random.Random(7)
    lat = [rng.lognormvariate(-4, 1) for _ in range(5000)]  # seconds, median ~18 ms
    clock = Clock()
    a, b = LiveWindow(60, 5, clock), LiveWindow(60, 5, clock)
    for i, s in enumerate(lat):
        (a if i % 2 else b).observe("1.0.1", s, ok=i % 10 != 0)
    f = figures(merge([a.snapshot(), b.snapshot()], since=0)["1.0.1"])
    exact = sorted(x * 1000 for x in lat)
    for p in (50, 90, 95, 99):
        want = exact[int(p / 100 * (len(exact) - 1))]
        assert abs(f[f"latency_p{p}_ms"] / want - 1) <= 0.021, (p, f, want)
    assert f["requests"] == 5000 and f["errors"] == 500 and f["error_rate"] == 0.1
    assert f["latency_mean_ms"] == pytest.approx(sum(exact) / len(exact))


def test_window_keeps_recent_slices_per_version_and_app_metrics():
    clock = Clock(1000.0)
    w = LiveWindow(retain=20, slice_seconds=5, clock=clock)
    w.observe("1.0.0", 0.01)
    w.record("1.0.0", "accuracy", 0.8)
    clock.t = 1012.0
    for _ in range(4):
        w.observe("1.0.1", 0.02, ok=False)
    w.record("1.0.1", "accuracy", 0.5)
    w.record("1.0.1", "accuracy", 0.7)
    w.record("1.0.1", "accuracy", float("nan"))  # dropped, not poisoning the mean
    snap = json.loads(json.dumps(w.snapshot()))  # what travels in the acknowledgement
    recent = live_figures([snap], window=5, now=clock.t)
    assert set(recent) == {"1.0.1"}  # 1.0.0's slice started before the window
    assert recent["1.0.1"]["error_rate"] == 1.0 and recent["1.0.1"]["accuracy"] == 0.6
    both = live_figures([snap], window=15, now=clock.t)
    assert both["1.0.0"] == pytest.approx(
        {"requests": 1, "errors": 0, "error_rate": 0, "latency_mean_ms": 10, "accuracy": 0.8,
         **{f"latency_p{p}_ms": both["1.0.0"][f"latency_p{p}_ms"] for p in (50, 90, 95, 99)}})
    clock.t = 1030.0
    w.observe("1.0.1", 0.01)
    assert [s["start"] for s in w.snapshot()["slices"]] == [1030.0]  # older ones dropped


def test_follower_reports_both_sides_of_a_split(tmp_path: Path):
    torch = pytest.importorskip("torch")
    import casstore.torch as ct
    from casstore.serving import Follower

    store = str(tmp_path / "s")
    g = torch.Generator().manual_seed(0)
    ct.save({"w": torch.randn(64, generator=g)}, store, "m")
    ct.save({"w": torch.randn(64, generator=g)}, store, "m")
    Repository(store).start_split("m", "1.0.1", steps=(0.5, 1.0))
    f = Follower(store, "m", interval=60, follower_id="f1", live_slice=1)
    f.record("ctr", 0.5)  # nothing loaded yet: dropped, never an error in a request path
    assert f.live.snapshot()["slices"] == []
    f.poll()
    for i in range(200):
        try:
            with f.request(f"user-{i}") as served:
                if served.version.version == "1.0.1" and i % 4 == 0:
                    raise ValueError("bad prediction")
                f.record("ctr", 0.1 if served.version.version == "1.0.1" else 0.2, served)
        except ValueError:
            pass
    f.record("ctr", 0.2)  # no version named: the base of the split
    f._report()
    (ack,) = read_acks(f.repo.store, "m", "current")
    live = live_figures([ack.figures], window=60)
    assert set(live) == {"1.0.0", "1.0.1"}
    n0, n1 = live["1.0.0"]["requests"], live["1.0.1"]["requests"]
    assert n0 + n1 == 200 and 60 < n1 < 140
    assert live["1.0.0"]["errors"] == 0 and 0 < live["1.0.1"]["errors"] < n1
    assert live["1.0.0"]["ctr"] == pytest.approx(0.2) and live["1.0.1"]["ctr"] == pytest.approx(0.1)
    r = run("status", "m", "--json", store=store)
    assert r.json()["followers"][0]["figures"]["slices"]  # status shows them too


# -- policy rules ------------------------------------------------------------------------
def test_rule_limits_and_thresholds():
    old = MetricRule(metric="accuracy")  # no limit: threshold 0 against the baseline, as before
    assert old.check({"accuracy": 0.89}, {"accuracy": 0.9})
    assert old.check({"accuracy": 0.9}, {"accuracy": 0.9}) is None
    cap = MetricRule(metric="error_rate", direction="lower", max=0.05)  # a limit only
    assert cap.check({"error_rate": 0.04}, {"error_rate": 0.0}) is None
    assert "above the limit 0.05" in cap.check({"error_rate": 0.06}, {})
    both = MetricRule(metric="latency_p99_ms", direction="lower", max=500, threshold=0.5,
                      relative=True)
    assert both.check({"latency_p99_ms": 160}, {"latency_p99_ms": 100})
    assert both.check({"latency_p99_ms": 140}, {"latency_p99_ms": 100}) is None
    p = WatchPolicy.parse('{"rules": [{"metric": "error_rate", "max": 0.1}], "window": "2m", '
                          '"sustain": "30s", "min_requests": 5}')
    assert (p.window, p.sustain, p.min_requests, p.max_attempts) == (120, 30, 5, 3)
    for bad in ('{"rules": [], "window": 5}', '{"rules": [{"metric": "x"}], "window": "soon"}',
                '{"rules": [{"metric": "x"}], "min_requests": -1}',
                '{"rules": [{"metric": "x"}], "sustain": 1, "extra": 1}'):
        with pytest.raises(ValueError):
            WatchPolicy.parse(bad)
    with pytest.raises(ValueError):  # a check policy stays strict: no watch fields
        RegressionPolicy.parse('{"rules": [{"metric": "x"}], "window": 5}')


# -- watch through the command line ------------------------------------------------------
POLICY = {"rules": [{"metric": "error_rate", "direction": "lower", "max": 0.05}],
          "window": 60, "min_requests": 50}


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """1.0.0, 1.0.1, 1.0.2 committed; ``current`` moved 1.0.0 -> 1.0.1 -> 1.0.2."""
    return committed_store(tmp_path, 3, promote=True, size=4 << 10)


def policy_file(tmp_path: Path, **changes: object) -> Path:
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(POLICY | changes))
    return p


def metrics_cmd(tmp_path: Path, doc: dict) -> str:
    f = tmp_path / "figures.json"
    f.write_text(json.dumps(doc))
    return f"cat {shlex.quote(str(f))}"


BAD = {"versions": {"1.0.2": {"requests": 400, "error_rate": 0.3},
                    "1.0.1": {"requests": 20, "error_rate": 0.0}}}


def watch(store: Path, *args: object) -> object:
    return run("watch", "m", "--once", "--json", *args, store=store)


def auto_entries(store: Path) -> list[dict]:
    r = run("reflog", "m", "--ref", "current", "--json", store=store)
    return [e for e in r.json()["entries"] if e["trigger"] == "auto"]


def test_watch_rolls_back_with_evidence(three: Path, tmp_path: Path):
    events = tmp_path / "events.jsonl"
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", metrics_cmd(tmp_path, BAD),
              "--notify", f"(cat; echo) >> {events}", "--watcher-id", "w1")
    assert r.code == EXIT_VIOLATION, r.err + r.out
    rep = r.json()
    assert (rep["state"], rep["semver"], rep["final"]) == ("rolled-back", "1.0.2", "1.0.1")
    (e,) = auto_entries(three)
    assert (e["op"], e["new"]["target"]["semver"]) == ("rollback", "1.0.1")
    ev = e["evidence"]
    assert ev["figures"]["1.0.2"]["error_rate"] == 0.3 and ev["watcher"] == "w1"
    assert ev["incident"] == "m@current#2" and "error_rate 0.3 above the limit" in e["reason"]
    assert ev["baseline"] == "1.0.1" and ev["baseline_source"] == "manifest"  # 20 requests: too few
    sent = [json.loads(x) for x in events.read_text().splitlines()]
    assert [x["event"] for x in sent] == ["ref-moved", "watch-incident"]
    assert sent[0]["trigger"] == "auto" and sent[0]["evidence"]["figures"] == ev["figures"]
    assert sent[1]["state"] == "rolled-back"
    # the next check judges 1.0.1 (fine): nothing moves again
    later = {"versions": {**BAD["versions"], "1.0.1": {"requests": 100, "error_rate": 0.01}}}
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd",
              metrics_cmd(tmp_path, later))
    assert r.code == 0 and r.json()["state"] == "ok", r.out
    assert len(auto_entries(three)) == 1


def test_failed_health_check_tries_the_next_stable_version(three: Path, tmp_path: Path):
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd",
              metrics_cmd(tmp_path, BAD), "--health-check", 'test "$CASSTORE_VERSION" != 1.0.1')
    assert r.code == EXIT_VIOLATION, r.err + r.out
    rep = r.json()
    assert rep["final"] == "1.0.0" and [a["ok"] for a in rep["attempts"]] == [False, True]
    assert [a["semver"] for a in rep["attempts"]] == ["1.0.1", "1.0.0"]
    moves = auto_entries(three)
    assert [(e["op"], e["new"]["target"]["semver"], e["evidence"]["attempt"]) for e in moves] \
        == [("rollback", "1.0.1", 1), ("rollback", "1.0.0", 2)]
    assert Repository(three).refs.get("m", "current").target.version == "1.0.0"


def test_no_target_passes_restores_the_incident_version(three: Path, tmp_path: Path):
    policy = policy_file(tmp_path, max_attempts=5)
    cmd = metrics_cmd(tmp_path, BAD)
    r = watch(three, "--policy", policy, "--metrics-cmd", cmd, "--health-check", "false")
    assert r.code == 1, r.err + r.out
    rep = r.json()
    assert rep["state"] == "restored" and rep["final"] == "1.0.2"
    assert [a["semver"] for a in rep["attempts"]] == ["1.0.1", "1.0.0"]  # then none is left
    moves = auto_entries(three)
    assert [(e["op"], e["new"]["target"]["semver"]) for e in moves] == [
        ("rollback", "1.0.1"), ("rollback", "1.0.0"), ("revert", "1.0.2")]
    assert "restored" in moves[-1]["reason"]
    # still bad, but it is the same incident: reported, not retried
    r = watch(three, "--policy", policy, "--metrics-cmd", cmd, "--health-check", "false")
    assert r.code == 1 and r.json()["state"] == "unresolved", r.out
    assert len(auto_entries(three)) == 3
    # a restored version is never a quick-rollback target of its own: the failed ones neither
    r = run("rollback", "m", "--previous-stable", store=three)
    assert r.code == 3 and "left by" in r.err, r.err


def test_sample_size_sustain_and_dry_run(three: Path, tmp_path: Path):
    few = {"versions": {"1.0.2": {"requests": 10, "error_rate": 0.9}}}
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", metrics_cmd(tmp_path, few))
    assert r.code == 0 and r.json()["state"] == "insufficient", r.out
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd",
              metrics_cmd(tmp_path, {"versions": {}}))
    assert r.code == 0 and r.json()["state"] == "no-traffic", r.out
    cmd = metrics_cmd(tmp_path, BAD)
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", cmd, "--dry-run")
    assert r.code == EXIT_VIOLATION and r.json()["state"] == "would-roll-back"
    assert r.json()["final"] == "1.0.1"
    flat = metrics_cmd(tmp_path, {"requests": 60, "error_rate": 0.1})  # for the judged version
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", flat, "--dry-run")
    assert r.code == EXIT_VIOLATION and r.json()["figures"]["1.0.2"]["error_rate"] == 0.1
    assert run("reflog", "m", "--json", store=three).json()["entries"][-1]["op"] == "promote"
    long = policy_file(tmp_path, sustain=3600)
    for _ in range(2):  # the incident opens, then waits: one bad minute does not flap
        r = watch(three, "--policy", long, "--metrics-cmd", cmd)
        assert r.code == 0 and r.json()["state"] == "violating", r.out
        assert "must last" in r.json()["message"]
    assert auto_entries(three) == []
    short = policy_file(tmp_path, sustain=0.2)
    import time

    time.sleep(0.25)  # the streak opened above has lasted long enough now
    r = watch(three, "--policy", short, "--metrics-cmd", cmd)
    assert r.code == EXIT_VIOLATION and r.json()["state"] == "rolled-back", r.out
    assert r.json()["attempts"][0]["semver"] == "1.0.1"


def test_clean_check_closes_the_streak(three: Path, tmp_path: Path):
    policy = policy_file(tmp_path, sustain=0.2)
    bad, good = metrics_cmd(tmp_path, BAD), None
    r = watch(three, "--policy", policy, "--metrics-cmd", bad)
    assert r.json()["state"] == "violating"
    (tmp_path / "ok.json").write_text(json.dumps(
        {"versions": {"1.0.2": {"requests": 400, "error_rate": 0.0}}}))
    good = f"cat {tmp_path / 'ok.json'}"
    assert run("watch", "m", "--once", "--json", "--policy", policy, "--metrics-cmd", good,
               store=three).json()["state"] == "ok"
    import time

    time.sleep(0.25)
    r = watch(three, "--policy", policy, "--metrics-cmd", bad)
    assert r.code == 0 and r.json()["state"] == "violating", r.out  # a new streak started


def test_split_is_aborted_on_a_violation_of_its_candidate(three: Path, tmp_path: Path):
    assert run("rollback", "m", "--to", "1.0.0", store=three).code == 0
    assert run("promote", "m", "1.0.2", "--steps", "20,100", store=three).code == 0
    doc = {"versions": {"1.0.2": {"requests": 100, "error_rate": 0.2},
                        "1.0.0": {"requests": 400, "error_rate": 0.01}}}
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", metrics_cmd(tmp_path, doc))
    assert r.code == EXIT_VIOLATION and r.json()["state"] == "aborted", r.out
    assert r.json()["baseline"] == "1.0.0"
    (e,) = auto_entries(three)
    assert e["op"] == "abort" and e["evidence"]["baseline_source"] == "observed"


def test_relative_rule_uses_recorded_figures_of_the_previous_version(three: Path, tmp_path: Path):
    policy = policy_file(tmp_path, rules=[{"metric": "latency_p99_ms", "direction": "lower",
                                           "threshold": 0.5, "relative": True}])
    fine = {"versions": {"1.0.2": {"requests": 400, "latency_p99_ms": 100}}}
    r = watch(three, "--policy", policy, "--metrics-cmd", metrics_cmd(tmp_path, fine))
    assert r.json()["state"] == "ok"  # 1.0.2's figures are recorded while it is fine
    assert run("promote", "m", "1.0.0", store=three).code == 0
    slow = {"versions": {"1.0.0": {"requests": 400, "latency_p99_ms": 180}}}
    r = watch(three, "--policy", policy, "--metrics-cmd", metrics_cmd(tmp_path, slow))
    assert r.code == EXIT_VIOLATION, r.out
    ev = auto_entries(three)[0]["evidence"]
    assert (ev["baseline"], ev["baseline_source"]) == ("1.0.2", "recorded")
    assert ev["figures"]["1.0.2"]["latency_p99_ms"] == 100


def test_watch_reads_followers_acknowledgements(three: Path, tmp_path: Path):
    """The figures of live followers are what watch judges, merged over followers."""
    store = Repository(three).store
    for i in range(2):
        w = LiveWindow(60, 1)
        for n in range(100):
            w.observe("1.0.2", 0.005, ok=n % 5 != 0)  # 20 % errors on each follower
        ack = FollowerAck(f"f{i}", "m", "current", ["1.0.2"], 2, __import__("time").time(), 1,
                          figures=w.snapshot())
        write_ack(store, ack)
    r = watch(three, "--policy", policy_file(tmp_path))
    assert r.code == EXIT_VIOLATION, r.err + r.out
    assert r.json()["figures"]["1.0.2"]["requests"] == 200
    assert r.json()["figures"]["1.0.2"]["error_rate"] == pytest.approx(0.2)


def test_bad_watch_input(three: Path, tmp_path: Path):
    r = watch(three, "--policy", policy_file(tmp_path), "--interval", "soon")
    assert r.code == 2
    r = watch(three, "--policy", tmp_path / "missing.json")
    assert r.code == 2
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", "echo '[1]'")
    assert r.code == 1 and "no figures" in r.err
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", "exit 3")
    assert r.code == 1 and "exited 3" in r.err
    r = run("watch", "nope", "--once", "--policy", policy_file(tmp_path), store=three)
    assert r.code == 3


# -- several watchers --------------------------------------------------------------------
def _race_watcher(store: str, policy: str, cmd: str, name: str, out: object) -> None:
    import contextlib
    import io

    from casstore.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["watch", "m", "--once", "--json", "--policy", policy, "--metrics-cmd", cmd,
                     "--watcher-id", name, "--store", store])
    out.put((name, code, buf.getvalue()))  # type: ignore[attr-defined]


def test_two_watchers_racing_on_one_incident_roll_back_once(three: Path, tmp_path: Path):
    """Two watcher processes judge the same incident at the same moment (their metrics
    commands wait for each other), two incidents in a row: one rollback each."""
    doc = tmp_path / "bad.json"
    doc.write_text(json.dumps(BAD))
    policy = str(policy_file(tmp_path))
    collisions = 0
    for round_ in range(2):
        gate = tmp_path / f"gate{round_}"
        gate.mkdir()
        cmd = (f"touch {gate}/$$; while [ $(ls {gate} | wc -l) -lt 2 ]; do sleep 0.01; done; "
               f"cat {doc}")
        out = CONTEXT.Queue()
        procs = [child(_race_watcher, str(three), policy, cmd, f"w{i}", out) for i in range(2)]
        for p in procs:
            p.start()
        results = sorted(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
        states = sorted(json.loads(o)["state"] for _, _, o in results)
        # the loser either lost the claim, or read the ref after the winner moved it
        assert states in (["handled-elsewhere", "rolled-back"],
                          ["insufficient", "rolled-back"]), results
        collisions += states[0] == "handled-elsewhere"
        assert len(auto_entries(three)) == round_ + 1
        assert Repository(three).refs.get("m", "current").target.version == "1.0.1"
        assert run("promote", "m", "1.0.2", store=three).code == 0  # the next incident
    print(f"{collisions} of 2 rounds had both watchers at the claim")


def test_a_watcher_that_read_the_ref_before_another_handled_it_stands_aside(three: Path,
                                                                           tmp_path: Path):
    """The interleaving the race above can hit: watcher A reads the ref, watcher B handles
    the whole incident, then A reaches the incident record. A judged what the ref served
    before B's rollback, so it stands aside; it is not an unresolved incident."""
    from casstore.ops.watch import Watcher

    repo = Repository(three)
    policy = WatchPolicy.parse(policy_file(tmp_path).read_text())
    a = Watcher(repo.rollout, "m", policy, watcher_id="a")
    b = Watcher(repo.rollout, "m", policy, watcher_id="b")
    seen: list = []

    def observed_after_b_acted(since: dict) -> dict:
        seen.append(b.check(BAD["versions"]))
        return BAD["versions"]

    rep = a.check(observed_after_b_acted)
    assert seen[0].state == "rolled-back"
    assert rep.state == "handled-elsewhere", rep
    assert len(auto_entries(three)) == 1
    assert repo.refs.get("m", "current").target.version == "1.0.1"
    # a later check by A judges what the ref serves now: the same incident, still violating
    everything_bad = {v: {"requests": 400, "error_rate": 0.5} for v in ("1.0.1", "1.0.2")}
    assert a.check(everything_bad).state == "unresolved"


def test_an_incident_opened_after_this_watcher_looked_is_acted_on(three: Path, tmp_path: Path,
                                                                   monkeypatch):
    """Watcher B opened the incident with a first-seen time later than A's clock reads (B
    opened it just after A looked, or B's host clock runs ahead). With no sustain to wait
    for, A acts: the race above once saw A report a bare 'violating' (it had computed a
    negative duration and waited for it to reach zero)."""
    import casstore.ops.watch as watch

    repo = Repository(three)
    b = watch.Watcher(repo.rollout, "m", WatchPolicy.parse(
        policy_file(tmp_path, sustain=30).read_text()), watcher_id="b")
    real = watch.time.time
    monkeypatch.setattr(watch.time, "time", lambda: real() + 5)  # B's clock, 5 s ahead
    assert b.check(BAD["versions"]).state == "violating"  # opened, waiting for its sustain
    monkeypatch.setattr(watch.time, "time", real)
    a = watch.Watcher(repo.rollout, "m", WatchPolicy.parse(policy_file(tmp_path).read_text()),
                      watcher_id="a")
    rep = a.check(BAD["versions"])
    assert rep.state == "rolled-back", rep
    assert repo.refs.get("m", "current").target.version == "1.0.1"


def test_a_ref_moved_by_someone_else_stops_the_watcher(three: Path, tmp_path: Path):
    """A human promotes while the watcher's first target fails its health check: the
    watcher's next move expects the ref it left, so it stops instead of moving on."""
    from casstore.ops.watch import Watcher

    repo = Repository(three)
    human = Repository(three)

    def meanwhile(event: dict) -> None:
        if event.get("trigger") == "auto" and event["new"]["target"]["version"] == "1.0.1":
            human.promote("m", "1.0.0", reason="a human acts")

    repo.on_ref_move(meanwhile)
    policy = WatchPolicy.parse(policy_file(tmp_path).read_text())
    w = Watcher(repo.rollout, "m", policy, health_check=lambda v: v.version != "1.0.1")
    rep = w.check(BAD["versions"])
    assert rep.state == "interrupted" and "moved" in rep.message, rep
    assert [a["version"] for a in rep.attempts] == ["1.0.1"]
    assert repo.refs.get("m", "current").target.version == "1.0.0"  # the human's move stands
    assert len(auto_entries(three)) == 1


def test_figures_from_before_the_move_do_not_count(three: Path, tmp_path: Path):
    """1.0.2 failed a minute ago (say, before a rollback); the ref has just been moved back
    to it: only what it did since that move is judged."""
    import time

    store = Repository(three).store
    clock = Clock(time.time() - 30)
    w = LiveWindow(120, 1, clock)
    for n in range(100):
        w.observe("1.0.2", 0.005, ok=n % 2 == 0)  # 50 % errors, before the move
    write_ack(store, FollowerAck("f", "m", "current", ["1.0.2"], 2, time.time(), 1,
                                 figures=w.snapshot()))
    r = watch(three, "--policy", policy_file(tmp_path, window=120))
    assert r.code == 0 and r.json()["state"] == "no-traffic", r.out
    clock.t = time.time()
    for n in range(100):
        w.observe("1.0.2", 0.005, ok=n % 2 == 0)
    write_ack(store, FollowerAck("f", "m", "current", ["1.0.2"], 2, time.time(), 1,
                                 figures=w.snapshot()))
    r = watch(three, "--policy", policy_file(tmp_path, window=120))
    assert r.code == EXIT_VIOLATION and r.json()["figures"]["1.0.2"]["requests"] == 100, r.out


def test_a_rollback_target_that_also_violates_is_not_rolled_back_again(three: Path,
                                                                       tmp_path: Path):
    everything_bad = {"versions": {v: {"requests": 400, "error_rate": 0.5}
                                   for v in ("1.0.0", "1.0.1", "1.0.2")}}
    cmd = metrics_cmd(tmp_path, everything_bad)
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", cmd)
    assert r.code == EXIT_VIOLATION and r.json()["final"] == "1.0.1"
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", cmd)
    assert r.code == 1 and r.json()["state"] == "unresolved", r.out  # a human decides
    assert "acts once per incident" in r.json()["message"]
    assert len(auto_entries(three)) == 1
    assert run("promote", "m", "1.0.0", store=three).code == 0  # a new move: a new incident
    r = watch(three, "--policy", policy_file(tmp_path), "--metrics-cmd", cmd)
    assert r.code == EXIT_VIOLATION and r.json()["incident"] != auto_entries(three)[0][
        "evidence"]["incident"]


def test_a_claim_whose_watcher_vanished_is_taken_over(three: Path, tmp_path: Path):
    import time

    from casstore.ops.watch import Watcher
    from casstore.repo.keys import incident_key

    repo = Repository(three)
    rec, _ = repo.refs.read("m", "current")
    stale = {"incident": f"m@current#{rec.seq}", "version": "1.0.2", "state": "acting",
             "first_seen": time.time() - 100, "owner": "gone", "claimed_at": time.time() - 100}
    repo.store.put(incident_key("m", "current", rec.seq), json.dumps(stale).encode())
    policy = WatchPolicy.parse(policy_file(tmp_path).read_text())
    busy = Watcher(repo.rollout, "m", policy, watcher_id="w", lease_seconds=1000)
    rep = busy.check(BAD["versions"])
    assert rep.state == "handled-elsewhere" and "gone" in rep.message
    rep = Watcher(repo.rollout, "m", policy, watcher_id="w", lease_seconds=10).check(
        BAD["versions"])
    assert rep.state == "rolled-back" and rep.final == "1.0.1"
    doc = json.loads(repo.store.get(incident_key("m", "current", rec.seq)))
    assert (doc["state"], doc["owner"], doc["result"]) == ("done", "w", "rolled-back")


def test_status_shows_live_figures(three: Path):
    import time

    w = LiveWindow(60, 1)
    for n in range(10):
        w.observe("1.0.2", 0.004, ok=n != 0)
    write_ack(Repository(three).store, FollowerAck("f", "m", "current", ["1.0.2"], 2,
                                                   time.time(), 1, figures=w.snapshot()))
    r = run("status", "m", store=three)
    assert r.code == 0 and "1.0.2: 10 req, 10.0% err, p99 4" in r.out, r.out


def test_a_check_costs_a_few_requests_whatever_the_history(three: Path, tmp_path: Path):
    """Judging reads the ref and the incident object (plus, once per window, records the
    figures of a version within policy): not the reflog, not the versions."""
    from casstore.ops.watch import Watcher
    from casstore.store import open_store
    from casstore.testing.stores import CountingStore

    counting = CountingStore(open_store(str(three)))
    repo = Repository(counting)
    policy = WatchPolicy.parse(policy_file(tmp_path).read_text())
    figs = {v: {"requests": 100, "error_rate": 0.0} for v in ("1.0.0", "1.0.1", "1.0.2")}
    costs = []
    for moves in (0, 30):
        for i in range(moves):
            repo.promote("m", f"1.0.{i % 3}")
        w = Watcher(repo.rollout, "m", policy)
        counting.reset()
        assert w.check(figs).state == "ok"  # records 1.0.x's figures: one put
        first = counting.requests
        counting.reset()
        assert w.check(figs).state == "ok"
        costs.append((first, counting.requests))
    assert costs == [(3, 2), (3, 2)], costs


def test_watch_on_s3(s3_url: str, tmp_path: Path):
    """Incidents and the ref moves use S3's conditional writes (moto over HTTP)."""
    base = series.tensors(n=2, size=4 << 10)
    for i in range(3):
        f = series.save(tmp_path / f"v{i}" / "m.safetensors", series.finetune(base, seed=i))
        assert run("commit", "m", f, store=s3_url).code == 0
        if i:
            assert run("promote", "m", f"1.0.{i}", store=s3_url).code == 0
    cmd = metrics_cmd(tmp_path, BAD)
    policy = policy_file(tmp_path, sustain=0.1)
    r = run("watch", "m", "--once", "--json", "--policy", policy, "--metrics-cmd", cmd,
            store=s3_url)
    assert r.code == 0 and r.json()["state"] == "violating", r.err + r.out
    import time

    time.sleep(0.15)
    r = run("watch", "m", "--once", "--json", "--policy", policy, "--metrics-cmd", cmd,
            "--health-check", 'test "$CASSTORE_VERSION" = 1.0.0', store=s3_url)
    assert r.code == EXIT_VIOLATION and r.json()["final"] == "1.0.0", r.err + r.out
    entries = run("reflog", "m", "--json", store=s3_url).json()["entries"]
    assert [(e["op"], e["trigger"]) for e in entries[-2:]] == [("rollback", "auto")] * 2
