"""Real small and read-only filesystems for tests: a tmpfs of a few MiB, remounted read-only.

Mounting needs root (or a user namespace) and may be refused in a sandbox or a
container; :func:`tmpfs` then skips the test, so a suite passes where it cannot
mount and runs the real thing where it can. ``chmod -R a-w`` is no substitute:
root writes through it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(folder: str | os.PathLike[str], size: str = "4m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on ``folder`` (created) for the block; skips the test if refused."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


def remount(folder: str | os.PathLike[str], read_only: bool) -> None:
    """Remount the tmpfs at ``folder`` read-only (or read-write again)."""
    done = _run("mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot remount {folder} here: {done.stderr.strip() or done.returncode}")


def fill(folder: str | os.PathLike[str], leave: int = 0) -> Path:
    """Fill the filesystem of ``folder`` up to ``leave`` free bytes with one file; returns it."""
    ballast = Path(folder) / "ballast"
    with open(ballast, "wb") as f:
        chunk = b"\0" * (1 << 16)
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
                f.flush()
            except OSError:
                break
    return ballast
