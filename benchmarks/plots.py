"""PNG plots of section results (matplotlib, Agg backend). Without matplotlib every function
returns no files and the report says so: ``pip install -e '.[bench]'``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MiB = 1 << 20


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def available() -> bool:
    return _plt() is not None


def _bars(ax: Any, names: list[str], values: list[float], title: str, fmt: str = "{:.0f}") -> None:
    colors = ["tab:blue" if n == "casstore" else "tab:gray" for n in names]
    bars = ax.bar(names, values, color=colors)
    ax.set_title(title, fontsize=10)
    for b, v in zip(bars, values):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)


def peers(d: dict, out: Path) -> list[Path]:
    plt = _plt()
    if plt is None or not d["tools"]:
        return []
    names = list(d["tools"])
    t = d["tools"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    _bars(axes[0][0], names, [t[n]["ingest_MBps"] for n in names], "ingest MB/s (higher is better)")
    _bars(axes[0][1], names, [t[n]["restore_MBps"] for n in names],
          "restore MB/s (higher is better)")
    _bars(axes[1][0], names, [t[n]["stored_vs_unique"] for n in names],
          "stored bytes / unique tensor bytes (lower is better)", "{:.3f}")
    axes[1][0].axhline(1.0, color="k", lw=0.8, ls="--")
    _bars(axes[1][1], names, [t[n]["ingest_peak_rss"] / MiB for n in names],
          "ingest peak RSS MiB (lower is better)")
    fig.suptitle(f"checkpoint series: {d['versions']} versions, "
                 f"{d['logical_bytes'] / 1e9:.2f} GB logical")
    fig.tight_layout()
    path = out / "peers.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def rss(d: dict, out: Path) -> list[Path]:
    plt = _plt()
    if plt is None or not d["tools"]:
        return []
    names = list(d["tools"])
    fig, ax = plt.subplots(figsize=(6, 4))
    _bars(ax, names, [d["tools"][n]["peak_rss"] / MiB for n in names],
          f"peak RSS MiB ingesting one {d['size_bytes'] / 2**30:.2f} GiB file")
    ax.axhline(128, color="r", lw=0.8, ls="--", label="target 128 MiB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "rss_2g.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def rollback(d: dict, out: Path) -> list[Path]:
    plt = _plt()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{d[k]['size_bytes'] / MiB:,.0f} MiB" for k in ("small", "large")]
    _bars(ax, labels, [d[k]["p50_ms"] for k in ("small", "large")],
          f"rollback p50 latency ms (ratio {d['ratio_p50']})", "{:.2f}")
    fig.tight_layout()
    path = out / "rollback.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def gc(d: dict, out: Path) -> list[Path]:
    plt = _plt()
    if plt is None:
        return []
    runs = d["runs"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["chunks"] for r in runs]
    ax.plot(x, [r["plan_s"] for r in runs], "o-", label="plan")
    ax.plot(x, [r["execute_s"] for r in runs], "o-", label="execute")
    ax.plot(x, [r["total_s"] for r in runs], "o-", label="total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in store")
    ax.set_ylabel("seconds")
    ax.set_title("GC time vs chunk count", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "gc.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def sweep(d: dict, out: Path) -> list[Path]:
    plt = _plt()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(8, 5))
    base = d.get("unique_tensor_bytes") or d["total_bytes"]
    colors = {"tensor": "tab:blue", "fastcdc": "tab:orange", "fixed": "tab:gray"}
    labels: dict[tuple[float, float], list[str]] = {}
    for r in d["results"]:
        kind = r["setting"]["kind"]
        xy = (r["objects_per_gb"], r["stored_bytes"] / base)
        ax.scatter(*xy, color=colors.get(kind, "k"), marker="o" if r["encoding"] == "raw" else "s")
        key = (round(xy[0], -1), round(xy[1], 3))  # settings that coincide share one label
        labels.setdefault(key, []).append(f"{r['label']} ({r['encoding']})")
    for (x, y), names in labels.items():
        ax.annotate("\n".join(names), (x, y), fontsize=6, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("objects per GB of input (log)")
    ax.set_ylabel("stored bytes / unique tensor bytes" if d.get("unique_tensor_bytes")
                  else "stored bytes / input bytes")
    ax.set_title("settings sweep: blue tensor-aware, orange FastCDC, gray fixed", fontsize=10)
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
