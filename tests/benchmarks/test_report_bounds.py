"""A missed target says what bounds it, with the measurement from the same run (issue 14):
the encoding-off figures for ingest, restore and commit memory, the per-object floor for pull,
the disk's write rate and casstore's CPU seconds for ingest and restore."""

from __future__ import annotations

from benchmarks.report import targets

MiB = 1 << 20


def _results() -> dict:
    tool = {"ingest_MBps": 400.0, "restore_MBps": 200.0, "stored_bytes": 10,
            "stored_vs_unique": 0.8, "ingest_peak_rss": 160 * MiB, "restore_peak_rss": 90 * MiB}
    off = {**tool, "ingest_MBps": 800.0, "restore_MBps": 390.0, "ingest_peak_rss": 130 * MiB}
    peer = {"ingest_MBps": 300.0, "restore_MBps": 160.0}
    return {
        "peers": {"status": "ok", "data": {
            "unique_tensor_bytes": 12,
            "tools": {"casstore": tool, "casstore-off": off, "borg": peer, "restic": peer}}},
        "push_pull": {"status": "ok", "data": {
            "pull_vs_s3fs": 0.5, "pull_MBps": 100, "s3fs_get_MBps": 200, "pull_s": 0.8,
            "s3fs_get_s": 0.4, "chunk_objects": 118, "s3fs_cat_chunk_objects_s": 0.42,
            "push_vs_s3fs": 1.5, "push_MBps": 150, "s3fs_put_MBps": 100, "push_s": 0.5,
            "s3fs_put_s": 0.75, "s3fs_pipe_chunk_objects_s": 0.61}},
    }


def test_both_scales_of_push_pull_are_judged_and_s3_commands_count_for_memory() -> None:
    results = _results()
    pp = results["push_pull"]["data"]
    small = {**pp, "logical_bytes": 134e6, "chunks_sent": 118, "casstore_bytes_sent": 35.4e6}
    pp.update(logical_bytes=537e6, chunks_sent=118, casstore_bytes_sent=143.9e6,
              pull_vs_s3fs=2.9, small_files=small,
              s3_commands={"push to s3://": {"seconds": 2.0, "peak_rss": 140 * MiB}})
    lines = {t.name: t.line() for t in targets(results)}
    model = lines["pull from S3 (moto) vs s3fs get of the same files (537 MB series: 118 "
                  "chunk objects, 1219 KB average)"]
    assert "PASS" in model
    tiny = lines["pull from S3 (moto) vs s3fs get of the same files (134 MB series, small "
                 "files: 118 chunk objects, 300 KB average)"]
    assert "MISS" in tiny and "s3fs alone fetches the same 118 chunk objects" in tiny
    rss = next(v for k, v in lines.items() if k.startswith("casstore peak RSS, every"))
    assert "push to s3:// 140" in rss


def test_missed_targets_name_their_bound() -> None:
    lines = {t.name: t.line() for t in targets(_results())}
    assert "MISS" in lines["ingest throughput vs borg"]
    assert "with encoding off, same run: 800.0 MB/s, 2.67x borg" in lines[
        "ingest throughput vs borg"]
    assert "390.0 MB/s, 2.44x restic" in lines["restore throughput vs restic"]
    rss = next(v for k, v in lines.items() if k.startswith("casstore peak RSS, every"))
    assert "MISS" in rss and "commit (series) with encoding off, same run: 130" in rss
    pull = lines["pull from S3 (moto) vs s3fs get of the same files"]
    assert "s3fs alone fetches the same 118 chunk objects in 0.42 s" in pull
    assert "casstore's pull 0.8 s" in pull
    push = lines["push to S3 (moto) vs s3fs put of the same files"]
    assert "s3fs alone puts the same 118 chunk objects in 0.61 s, the files whole in " \
           "0.75 s; casstore's push 0.5 s" in push


def test_the_link_rows_report_round_trips_waited() -> None:
    from benchmarks.report import commands_headline

    results = _results()
    pp = results["push_pull"]["data"]
    pp.update(logical_bytes=134e6)
    pp["small_files"] = {**pp, "link": {
        "rtt_ms": 20.0, "versions": 20, "push_s": 0.8, "pull_s": 0.27, "push_round_trips": 40.0,
        "pull_round_trips": 13.5, "push_requests": 169, "pull_requests": 145,
        "push_one_s": 0.28, "push_one_round_trips": 14.0, "rollback_s": 0.17,
        "rollback_round_trips": 8.5}}
    rows = "\n".join(commands_headline(results))
    assert "| push of 20 small versions over a 20 ms round trip | 0.8 s (40.0 round trips, " \
           "169 requests) |" in rows
    assert "| pull of 20 small versions over a 20 ms round trip | 0.27 s (13.5" in rows
    assert "| push of one new version into a bucket of 20, moving current, 20 ms round trip " \
           "| 0.28 s (14.0 round trips) |" in rows
    assert "| rollback of current in that bucket, 20 ms round trip | 0.17 s (8.5 round " \
           "trips) |" in rows


def test_disk_bound_of_ingest_and_restore() -> None:
    """With the disk measured in the same run, ingest and restore say what the disk alone
    allows: a restore writes every logical byte, an ingest what casstore stores."""
    results = _results()
    peers = results["peers"]["data"]
    peers.update(logical_bytes=3_000_000_000, disk={"dd_fsync_MBps": [350.0, 450.0],
                                                    "dd_bytes": 1, "settle_s": 8.0})
    peers["tools"]["casstore"].update(stored_bytes=1_200_000_000, ingest_cpu_seconds=12.0)
    peers["cores"] = 2
    lines = {t.name: t.line() for t in targets(results)}
    # 1,200 MB at 400 MB/s: 3.00 s for 3,000 MB, at most 1,000 MB/s = 3.33x borg's 300
    assert ("dd conv=fsync writes new blocks at 400 MB/s and casstore's commits write "
            "1,200 MB, so it cannot finish the 3,000 MB in less than 3.00 s: at most "
            "1,000 MB/s, 3.33x borg") in lines["ingest throughput vs borg"]
    # and its CPU: 12 CPU-seconds on 2 cores, 6.00 s at least: 500 MB/s, 1.67x borg
    assert ("its CPU: 12.0 CPU-seconds, on 2 cores at least 6.00 s: at most 500 MB/s, "
            "1.67x borg") in lines["ingest throughput vs borg"]
    assert "CPU" not in lines["restore throughput vs restic"]  # not measured for restore
    # every restore writes 3,000 MB: 7.50 s, 400 MB/s = 2.50x restic's 160
    assert ("every restore writes 3,000 MB, so it cannot finish the 3,000 MB in less than "
            "7.50 s: at most 400 MB/s, 2.50x restic") in lines["restore throughput vs restic"]
    assert "at most 1,000 MB/s, 3.33x borg" in lines["ingest, default encoding vs borg"]
    del peers["disk"]  # a quick run measures no disk: no bound claimed
    lines = {t.name: t.line() for t in targets(results)}
    assert "dd conv=fsync" not in lines["ingest throughput vs borg"]
