"""Atomic private writes: modes, no leftovers, crash-left temp files swept."""

from __future__ import annotations

import os
import stat

import pytest

from gptme_subscription_plugin import fsutil


def mode(path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_atomic_write_is_private_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f"
    fsutil.atomic_write_text(target, "one")
    fsutil.atomic_write_text(target, "two")
    assert target.read_text() == "two" and mode(target) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_failed_write_keeps_old_content(tmp_path):
    target = tmp_path / "f"
    fsutil.atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        fsutil.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f"]


def test_private_dir_is_tightened(tmp_path):
    d = tmp_path / "a" / "b"
    fsutil.ensure_private_dir(d)
    assert mode(d) == 0o700
    d.chmod(0o755)
    fsutil.ensure_private_dir(d)
    assert mode(d) == 0o700


def test_atomic_symlink_replaces_file_or_link(tmp_path):
    link = tmp_path / "live"
    link.write_text("regular")
    fsutil.atomic_symlink("target-a", link)
    assert os.readlink(link) == "target-a"
    fsutil.atomic_symlink("target-b", link)
    assert os.readlink(link) == "target-b" and sorted(os.listdir(tmp_path)) == ["live"]


def test_sweep_removes_only_old_own_temp_files(tmp_path):
    old = fsutil.temp_path_for(tmp_path / "slot")
    old.write_text("x")
    os.utime(old, (1000, 1000))
    young = fsutil.temp_path_for(tmp_path / "slot")
    young.write_text("x")
    other = tmp_path / "slot.backup"
    other.write_text("x")
    os.utime(other, (1000, 1000))
    removed = fsutil.sweep_temp_files(tmp_path, "slot", older_than_s=60, now=young.stat().st_mtime)
    assert removed == [old] and young.exists() and other.exists()
