"""The report: the targets checked against the measured ratios, the
headline table, and ``report.md`` assembled from every section's own rendering. A missed
target is printed as MISS with the measured ratio and the shortfall; one that could not be
measured is N/A."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.latency import PYDANTIC_FLOOR
from benchmarks.registry import SECTIONS

MiB = 1 << 20


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None  # the ratio or value compared with the threshold
    threshold: float
    higher_is_better: bool
    unit: str  # "x" for ratios, " MiB" ...
    detail: str  # what was divided by what, or why N/A
    issue: int = 7  # the issue that set the target

    @property
    def status(self) -> str:
        if self.measured is None:
            return "N/A"
        ok = (self.measured >= self.threshold) if self.higher_is_better else (
            self.measured <= self.threshold
        )
        return "PASS" if ok else "MISS"

    @property
    def margin(self) -> str:
        """How far past (PASS) or short of (MISS) the threshold, in percent."""
        if self.measured is None:
            return ""
        if self.higher_is_better:
            pct = (self.measured / self.threshold - 1) * 100
        else:
            pct = (1 - self.measured / self.threshold) * 100
        return f"{abs(pct):.1f}% {'better than' if pct >= 0 else 'short of'} the target"

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        fmt = "{:.3f}" if self.unit == "x" else "{:.1f}"
        got = "not measured" if self.measured is None else fmt.format(self.measured) + self.unit
        extra = f", {self.margin}" if self.margin else ""
        return (f"**{self.status}** {self.name}: {got} (target {op} {self.threshold:g}"
                f"{self.unit}{extra}; {self.detail})")

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status, "margin": self.margin}


def _data(results: dict, name: str) -> dict | None:
    r = results.get(name)
    return r["data"] if r and r.get("status") == "ok" else None


def targets(results: dict) -> list[Target]:
    out: list[Target] = []
    peers = _data(results, "peers")
    tools = peers["tools"] if peers else {}
    cas = tools.get("casstore")

    off = tools.get("casstore-off")

    def ratio(key: str, peer: str, threshold: float, label: str) -> None:
        if cas and peer in tools:
            m = cas[key] / tools[peer][key]
            bound = (f"; with encoding off, same run: {off[key]:,} MB/s, "
                     f"{off[key] / tools[peer][key]:.2f}x {peer} (what the encoder costs)"
                     if off and key in off else "")
            copy = tools.get("copy")
            if key == "restore_MBps" and copy:  # writes the same files: `cp` shows the disk
                bound += (f"; a plain copy, same run: {copy[key]:,} MB/s, "
                          f"{copy[key] / tools[peer][key]:.2f}x {peer} (the disk's bound)")
            bound += _disk_and_cpu_bound(peers, key, cas, tools[peer][key], peer)
            out.append(Target(label, m, threshold, True, "x",
                              f"casstore {cas[key]:,} MB/s vs {peer} {tools[peer][key]:,} MB/s"
                              f"{bound}"))
        else:
            why = (peers or {}).get("skipped", {}).get(peer) or "peers section did not run"
            out.append(Target(label, None, threshold, True, "x", why))

    ratio("ingest_MBps", "borg", 3, "ingest throughput vs borg")
    ratio("ingest_MBps", "restic", 6, "ingest throughput vs restic")
    if cas:
        detail = f"{cas['stored_bytes']:,} / {peers['unique_tensor_bytes']:,} bytes"
        out.append(Target("stored bytes vs unique tensor bytes", cas["stored_vs_unique"], 1.01,
                          False, "x", detail))
    else:
        out.append(Target("stored bytes vs unique tensor bytes", None, 1.01, False, "x",
                          "peers section did not run"))
    ratio("restore_MBps", "restic", 4, "restore throughput vs restic")
    rss = _data(results, "rss_2g")
    if rss and "casstore" in rss["tools"]:
        size = rss["size_bytes"]
        note = "" if size >= 2 << 30 else f" (quick run: the file is {size / MiB:.0f} MiB)"
        out.append(Target(f"casstore peak RSS ingesting one {size / 2**30:.2f} GiB file",
                          rss["tools"]["casstore"]["peak_rss"] / MiB, 128, False, " MiB",
                          f"peak RSS of the `casstore commit` process{note}"))
    else:
        out.append(Target("casstore peak RSS ingesting one 2 GiB file", None, 128, False,
                          " MiB", "rss_2g section did not run"))
    rb = _data(results, "rollback")
    if rb:
        out.append(Target(f"rollback {rb['large']['size_bytes'] / MiB:,.0f} MiB model vs "
                          f"{rb['small']['size_bytes'] / MiB:,.0f} MiB model", rb["ratio_p50"],
                          1.2, False, "x",
                          f"p50 {rb['large']['p50_ms']:.2f} ms vs {rb['small']['p50_ms']:.2f} ms"))
    else:
        out.append(Target("rollback of a >=1 GB model vs 1 MB model", None, 1.2, False, "x",
                          "rollback section did not run"))
    return out + latency_targets(results) + encoding_targets(results)


def _disk_and_cpu_bound(peers: dict, key: str, cas: dict, peer_mbps: float, peer: str) -> str:
    """What the disk alone allows, measured in the same run (``dd conv=fsync`` of the
    series' biggest file to new blocks, as every tool met the disk): a restore writes every
    logical byte, an ingest the bytes casstore stores."""
    rates = (peers.get("disk") or {}).get("dd_fsync_MBps")
    if not rates:
        return ""
    rate = sum(rates) / len(rates)  # MB/s
    logical = peers["logical_bytes"] / 1e6
    written = logical if key == "restore_MBps" else cas["stored_bytes"] / 1e6
    ceiling = logical / (written / rate)
    what = "every restore writes" if key == "restore_MBps" else "casstore's commits write"
    out = (f"; the disk, same run: dd conv=fsync writes new blocks at {rate:,.0f} MB/s and "
           f"{what} {written:,.0f} MB, so it cannot finish the {logical:,.0f} MB in less "
           f"than {written / rate:.2f} s: at most {ceiling:,.0f} MB/s, "
           f"{ceiling / peer_mbps:.2f}x {peer}")
    phase = key.removesuffix("_MBps")
    cpu, cores = cas.get(f"{phase}_cpu_seconds"), peers.get("cores")
    if cpu and cores:  # the work itself, spread over every core with nothing else running
        out += (f"; its CPU: {cpu:.1f} CPU-seconds, on {cores} cores at least "
                f"{cpu / cores:.2f} s: at most {logical / (cpu / cores):,.0f} MB/s, "
                f"{logical / (cpu / cores) / peer_mbps:.2f}x {peer}")
    return out


LIGHT = ("casstore refs m", "casstore log m -n 5", "casstore rollback m --to")


def latency_targets(results: dict) -> list[Target]:
    """Command latency, memory of every command measured, and transfers vs s3fs."""
    out: list[Target] = []
    lat = _data(results, "latency")
    if lat:
        c = lat["commands"]
        slowest = max(LIGHT, key=lambda k: c[k]["median_ms"])
        ins = lat.get("instructions") or {}
        bound = ""
        if ins.get("python -c pass"):
            base = ins["python -c pass"]
            bound = (f"; instructions: `{slowest}` {ins.get(slowest, 0) / base:.1f}x "
                     "`python -c pass`")
        if PYDANTIC_FLOOR in c:
            bound += (f"; for comparison, pydantic alone (import + one model, what the models "
                      f"cost before msgspec) {c[PYDANTIC_FLOOR]['median_ms']} ms")
        out.append(Target(f"light commands, whole-process median (slowest: `{slowest}`)",
                          c[slowest]["median_ms"], lat["target_ms"], False, " ms",
                          f"`python -c pass` {c['python -c pass']['median_ms']} ms in the "
                          f"same run{bound}", issue=14))
    else:
        out.append(Target("light commands, whole-process median", None, 120, False, " ms",
                          "latency section did not run", issue=14))
    peaks: dict[str, int] = {}
    cas = ((_data(results, "peers") or {}).get("tools") or {}).get("casstore")
    for key, label in (("ingest_peak_rss", "commit (series)"),
                       ("restore_peak_rss", "checkout (series)")):
        if cas and key in cas:
            peaks[label] = cas[key]
    peaks.update((cas or {}).get("other_peak_rss") or {})  # push, pull, verify --read-data
    big = ((_data(results, "rss_2g") or {}).get("tools") or {}).get("casstore")
    if big:
        peaks["commit (2 GiB file)"] = big["peak_rss"]
    for name, r in ((lat or {}).get("commands") or {}).items():
        if name.startswith("casstore"):
            peaks[name.removeprefix("casstore ")] = r["peak_rss"]
    for name, r in ((_data(results, "push_pull") or {}).get("s3_commands") or {}).items():
        peaks[name] = r["peak_rss"]
    if peaks:
        worst = max(peaks, key=lambda k: peaks[k])
        off = ((_data(results, "peers") or {}).get("tools") or {}).get("casstore-off") or {}
        bound = (f"; commit (series) with encoding off, same run: "
                 f"{off['ingest_peak_rss'] / MiB:.0f}" if "ingest_peak_rss" in off else "")
        out.append(Target(f"casstore peak RSS, every command measured (worst: {worst})",
                          peaks[worst] / MiB, 128, False, " MiB",
                          ", ".join(f"{k} {v / MiB:.0f}" for k, v in peaks.items()) + bound,
                          issue=14))
    else:
        out.append(Target("casstore peak RSS, every command measured", None, 128, False,
                          " MiB", "peers/rss_2g/latency sections did not run", issue=14))
    ing = _data(results, "ingest")
    if ing and ing["files"]:
        rows = ing["files"]
        slow = min(rows, key=lambda k: rows[k]["dedup_GBps"])
        r = rows[slow]
        out.append(Target(f"dedup-only ingest in-process (slowest: {slow})", r["dedup_GBps"],
                          ing["dedup_target_GBps"], True, " GB/s",
                          f"blake3 with two threads over the same bytes: "
                          f"{r['blake3_2threads_GBps']} GB/s ({r['dedup_vs_blake3']}x)", issue=14))
        slow = min(rows, key=lambda k: rows[k]["new_data_vs_dd"])
        r = rows[slow]
        out.append(Target(f"new-data ingest vs dd conv=fsync (slowest: {slow})",
                          r["new_data_vs_dd"], ing["new_data_vs_dd_target"], True, "x",
                          f"{r['new_data_GBps']} GB/s vs dd {r['dd_fsync_GBps']} GB/s"
                          + (f"; with encoding off, same run: {r['new_data_off_GBps']} GB/s, "
                             f"{r['new_data_off_GBps'] / r['dd_fsync_GBps']:.2f}x dd"
                             if "new_data_off_GBps" in r else ""), issue=14))
    else:
        out.append(Target("dedup-only ingest in-process", None, 3.0, True, " GB/s",
                          "ingest section did not run", issue=14))
        out.append(Target("new-data ingest vs dd conv=fsync", None, 0.9, True, "x",
                          "ingest section did not run", issue=14))
    pp = _data(results, "push_pull")
    out.extend(_transfer_targets(pp, ""))
    if pp and "small_files" in pp:
        out.extend(_transfer_targets(pp["small_files"], ", small files"))
    if pp and "s3_checkout_vs_pull" in pp:
        out.append(Target("checkout straight from s3:// vs pull + local checkout",
                          pp["s3_checkout_vs_pull"], 1.2, False, "x",
                          f"{pp['s3_checkout_s']} s vs {pp['pull_checkout_s']} s", issue=14))
    return out


def _transfer_targets(pp: dict | None, scale: str) -> list[Target]:
    """Push and pull against s3fs moving the same files, at one scale of the series."""
    out = []
    size = (f" ({pp['logical_bytes'] / 1e6:.0f} MB series{scale}: {pp['chunks_sent']} chunk "
            f"objects, {pp['casstore_bytes_sent'] / max(1, pp['chunks_sent']) / 1e3:.0f} KB "
            "average)") if pp and "chunks_sent" in pp else ""
    for key, threshold, label, what in (
            ("pull_vs_s3fs", 1.5, "pull from S3 (moto) vs s3fs get of the same files",
             ("pull_MBps", "s3fs_get_MBps")),
            ("push_vs_s3fs", 1.0, "push to S3 (moto) vs s3fs put of the same files",
             ("push_MBps", "s3fs_put_MBps"))):
        if pp and key in pp:
            floor = ""
            if key == "pull_vs_s3fs" and "s3fs_cat_chunk_objects_s" in pp:
                floor = (f"; the per-object floor: s3fs alone fetches the same "
                         f"{pp['chunk_objects']} chunk objects in "
                         f"{pp['s3fs_cat_chunk_objects_s']} s, the files whole in "
                         f"{pp['s3fs_get_s']} s; casstore's pull {pp['pull_s']} s")
            if key == "push_vs_s3fs" and "s3fs_pipe_chunk_objects_s" in pp:
                floor = (f"; the per-object floor: s3fs alone puts the same "
                         f"{pp['chunk_objects']} chunk objects in "
                         f"{pp['s3fs_pipe_chunk_objects_s']} s, the files whole in "
                         f"{pp['s3fs_put_s']} s; casstore's push {pp['push_s']} s")
            rounds = f", medians of {pp['rounds']} interleaved rounds" if pp.get(
                "rounds", 1) > 1 else ""
            out.append(Target(label + size, pp[key], threshold, True, "x",
                              f"{pp[what[0]]} MB/s vs {pp[what[1]]} MB/s of logical bytes"
                              f"{rounds}{floor}", issue=14))
        else:
            out.append(Target(label, None, threshold, True, "x",
                              "push_pull section did not run", issue=14))
    return out


def encoding_targets(results: dict) -> list[Target]:
    """Issue 13: stored bytes below the unique bytes, without giving up speed."""
    out: list[Target] = []
    peers = _data(results, "peers")
    tools = peers["tools"] if peers else {}
    cas, off = tools.get("casstore"), tools.get("casstore-off")

    def add(name: str, measured: float | None, threshold: float, higher: bool, unit: str,
            detail: str) -> None:
        out.append(Target(name, measured, threshold, higher, unit, detail, issue=13))

    if cas:
        add("benchmark series stored vs unique tensor bytes (default encoding)",
            cas["stored_vs_unique"], 0.85, False, "x",
            f"{cas['stored_bytes']:,} / {peers['unique_tensor_bytes']:,} bytes")
    else:
        add("benchmark series stored vs unique tensor bytes", None, 0.85, False, "x",
            "peers section did not run")
    tr = _data(results, "training")
    for kind, limit in (("fp32", 0.75), ("bf16", 0.50)):
        t = (tr or {}).get("kinds", {}).get(kind, {}).get("casstore")
        e = (tr or {}).get("entropy", {}).get(kind)
        bound = (f"; the bound, same files (order-0 entropy of the byte streams): each alone "
                 f"{e['plain']:.3f}, XOR with the previous checkpoint {e['xor_previous']:.3f}"
                 f", each byte given the previous checkpoint's {e['given_previous']:.3f} "
                 "(a context model reading the parent)") if e else ""
        add(f"training run, {kind} weights stored vs logical", t and t["stored_vs_logical"],
            limit, False, "x", f"{t['stored_bytes']:,} / {t['logical_bytes']:,} bytes{bound}"
            if t else "training section did not run")

    def ratio(name: str, a: dict | None, b: dict | None, key: str, threshold: float,
              what: str, peer: str = "") -> None:
        if a and b and b[key]:
            bound = _disk_and_cpu_bound(peers, key, a, b[key], peer) if peer else ""
            add(name, a[key] / b[key], threshold, True, "x",
                f"{a[key]:,} MB/s vs {b[key]:,} MB/s ({what}){bound}")
        else:
            add(name, None, threshold, True, "x", "not measured (peers section, tools)")

    ratio("ingest, default encoding vs encoding off", cas, off, "ingest_MBps", 1.0,
          "benchmark series")
    ratio("ingest, default encoding vs borg", cas, tools.get("borg"), "ingest_MBps", 2.0,
          "benchmark series", "borg")
    ratio("restore, encoded vs raw", cas, off, "restore_MBps", 0.8, "benchmark series")
    co = _data(results, "codecs")
    rows = [r for r in (co or {}).get("rows", []) if r["codec"] == "casstore fast"]
    if rows:
        total = sum(r["bytes"] for r in rows)
        mbps = total / sum(r["bytes"] / r["dec_MBps"] for r in rows)
        add("decode, in-process (casstore fast, one thread)", mbps, 1000, True, " MB/s",
            "all fp32/bf16 training chunks, plain and XOR, bytes-weighted")
    else:
        add("decode, in-process", None, 1000, True, " MB/s", "codecs section did not run")
    return out


def headline(results: dict) -> list[str]:
    peers = _data(results, "peers")
    rss = _data(results, "rss_2g") or {"tools": {}}
    if not peers:
        return ["(the peers section did not run: no tools table)", *commands_headline(results)]
    rows = [
        f"Series: {peers['versions']} versions, {peers['logical_bytes'] / 1e9:.2f} GB logical, "
        f"{peers['unique_tensor_bytes'] / 1e9:.3f} GB unique tensor bytes.",
        "",
        "| tool | ingest MB/s | stored GB | stored / unique | restore MB/s | ingest peak RSS "
        f"MiB | restore peak RSS MiB | ingest peak RSS MiB ({rss.get('size_bytes', 0) / 2**30:.2f}"
        " GiB file) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in peers["tools"].items():
        big = rss["tools"].get(name)
        big_rss = f"{big['peak_rss'] / MiB:.0f}" if big else "-"
        rows.append(
            f"| {name} | {t['ingest_MBps']:,.0f} | {t['stored_bytes'] / 1e9:.3f} | "
            f"{t['stored_vs_unique']:.3f} | {t['restore_MBps']:,.0f} | "
            f"{t['ingest_peak_rss'] / MiB:.0f} | {t['restore_peak_rss'] / MiB:.0f} | {big_rss} |"
        )
    rows += [f"| {name} | skipped: {why} |||||||" for name, why in peers["skipped"].items()]
    return rows + commands_headline(results)


def commands_headline(results: dict) -> list[str]:
    """Command latency and push/pull, the other half of the headline."""
    rows = ["", "| command / transfer | casstore | reference (same run) | ratio |",
            "|---|---:|---:|---:|"]
    lat = _data(results, "latency")
    if lat:
        c = lat["commands"]
        base = c["python -c pass"]["median_ms"]
        for name in LIGHT:
            rows.append(f"| `{name}` median | {c[name]['median_ms']} ms | `python -c pass` "
                        f"{base} ms | {c[name]['median_ms'] / base:.1f}x |")
        if "restic version" in c:
            rows.append(f"| (peer) `restic version` median | - | {c['restic version']['median_ms']}"
                        " ms | - |")
    pp = _data(results, "push_pull")
    for scale, d in (("", pp), (", small files", (pp or {}).get("small_files"))):
        if not d:
            continue
        what = f"{d['logical_bytes'] / 1e6:.0f} MB series{scale}"
        rows.append(f"| push to S3 (moto), {what} | {d['push_MBps']} MB/s | s3fs put "
                    f"{d['s3fs_put_MBps']} MB/s | {d['push_vs_s3fs']}x |")
        rows.append(f"| pull from S3 (moto), {what} | {d['pull_MBps']} MB/s | s3fs get "
                    f"{d['s3fs_get_MBps']} MB/s | {d['pull_vs_s3fs']}x |")
    link = (pp or {}).get("link") or ((pp or {}).get("small_files") or {}).get("link")
    if link:
        for way in ("push", "pull"):
            rows.append(f"| {way} of {link['versions']} small versions over a "
                        f"{link['rtt_ms']:.0f} ms round trip | {link[f'{way}_s']} s "
                        f"({link[f'{way}_round_trips']} round trips, "
                        f"{link[f'{way}_requests']} requests) | - | - |")
        for key, what in (("push_one", f"push of one new version into a bucket of "
                                       f"{link['versions']}, moving current"),
                          ("rollback", "rollback of current in that bucket")):
            if f"{key}_s" in link:
                rows.append(f"| {what}, {link['rtt_ms']:.0f} ms round trip | "
                            f"{link[f'{key}_s']} s ({link[f'{key}_round_trips']} round trips) "
                            "| - | - |")
    if pp and "s3_checkout_s" in pp:
        rows.append(f"| checkout from s3:// | {pp['s3_checkout_s']} s | pull + local "
                    f"checkout {pp['pull_checkout_s']} s | {pp['s3_checkout_vs_pull']}x |")
    return rows if len(rows) > 3 else []


def markdown(doc: dict, pngs: dict[str, list[Path]], out: Path) -> str:
    results = doc["sections"]
    lines = [
        "# casstore benchmark report",
        "",
        f"{doc['started']} · {doc['machine']} · size {doc['options']['size_mb']} MiB base model"
        + (" · --quick" if doc["options"]["quick"] else ""),
        "",
        *([f"**{doc['plots_note']}**", ""] if doc.get("plots_note") else []),
        "## Headline",
        "",
        *headline(results),
        "",
        "## Targets: ingest, storage, restore, memory",
        "",
        *[f"- {t['line']}" for t in doc["targets"] if t.get("issue", 7) == 7],
        "",
        "## Targets: command latency, memory of every command, transfers",
        "",
        *[f"- {t['line']}" for t in doc["targets"] if t.get("issue") == 14],
        "",
        "## Targets: chunk encodings",
        "",
        *[f"- {t['line']}" for t in doc["targets"] if t.get("issue") == 13],
        "",
    ]
    for name, r in results.items():
        lines += [f"## {r['title']}", ""]
        if r["status"] != "ok":
            lines += [f"**{r['status'].upper()}**: {r['reason']}", ""]
            continue
        s = SECTIONS.get(name)
        body = s.render(r["data"]) if s and s.render else [
            "```json", json.dumps(r["data"], indent=2)[:6000], "```"]
        lines += body + ["", f"_{r['seconds']} s_", ""]
        lines += [f"![{name}]({p.relative_to(out)})" for p in pngs.get(name, [])]
        lines.append("")
    return "\n".join(lines)
