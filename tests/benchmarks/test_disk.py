"""benchmarks.disk: which file system holds a path (the longest mount point above it), and
the dd measurement leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from benchmarks.disk import dd_fsync, mount_options


def test_the_longest_mount_point_above_a_path_decides(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw,relatime,discard 0 0\n"
        "tmpfs /scratch tmpfs rw,nosuid 0 0\n"
        "/dev/vdb /scratch/deep xfs rw,noatime 0 0\n"
        "short line\n")
    assert "discard" in mount_options(Path("/home/x"), mounts)
    assert mount_options(Path("/scratch"), mounts) == ["rw", "nosuid"]
    assert mount_options(Path("/scratch/a/b"), mounts) == ["rw", "nosuid"]
    assert mount_options(Path("/scratch/deep/file"), mounts) == ["rw", "noatime"]
    assert mount_options(Path("/scratchpad/x"), mounts) == ["rw", "relatime", "discard"]
    assert mount_options(Path("/x"), tmp_path / "missing") == []


def test_dd_measures_and_removes_its_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"\1" * (1 << 20))
    assert dd_fsync(src, tmp_path, settled=False) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
