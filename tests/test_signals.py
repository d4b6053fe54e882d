"""SIGTERM and SIGINT: the console script cleans up, says "interrupted" and exits 143 or 130.

A command stopped by either signal releases its lock, leaves no temporary file in the
repository or beside its target, and the next command runs at once. A lock whose
holder died on this host without releasing it (SIGKILL) is stale at once.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.repository.locks import Lock, list_locks
from vecdr.testing.cli import CLEARED, console_script, run

ROWS, D = 300_000, 64  # about a second of work on a 2-core machine


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "big.faiss"
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(5).standard_normal((ROWS, D)).astype(np.float32), np.arange(ROWS))
    faiss.write_index(index, str(path))
    return path


def _start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.Popen([console_script(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)


def _temporaries(*folders: Path) -> list[str]:
    return [str(p) for folder in folders for p in folder.rglob("*")
            if p.name.startswith(".tmp-") or p.name.endswith(".vecdr-tmp")]


def _stopped_cleanly(proc: subprocess.Popen[str], signum: int) -> int:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 128 + signum), (proc.returncode, err)
    if proc.returncode:
        assert err.strip() == "vecdr: error: interrupted", err
    return proc.returncode


def _after(repo: Path, *folders: Path) -> None:
    """Nothing left behind, and maintenance runs at once."""
    assert not list((repo / "locks").glob("*.json")), list((repo / "locks").iterdir())
    assert not _temporaries(repo, *folders)
    started = time.monotonic()
    pruned = run("prune", str(repo), "--grace", "0h")
    assert pruned.returncode == 0, pruned.stderr
    assert time.monotonic() - started < 60


@pytest.mark.fault("SIGTERM once vecdr snapshot holds its lock", store="local")
def test_sigterm_during_a_snapshot_releases_its_lock_and_leaves_nothing(big: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    vecdr.init(repo)
    proc = _start("snapshot", str(repo), f"faiss:{big}")
    deadline = time.monotonic() + 60
    while not list((repo / "locks").glob("shared-*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    assert _stopped_cleanly(proc, signal.SIGTERM) == 143  # the lock was held: the work had begun
    _after(repo)
    assert not vecdr.snapshots(str(repo))
    assert run("snapshot", str(repo), f"faiss:{big}").returncode == 0
    assert vecdr.verify(str(repo), read_data=True).ok


def _measure(*args: str) -> float:
    started = time.monotonic()
    proc = _start(*args)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    return time.monotonic() - started


@pytest.mark.fault("SIGTERM at a random point of vecdr restore into FAISS", store="local")
def test_sigterm_during_a_restore_leaves_no_temporary_file(big: Path, tmp_path: Path, cases: object) -> None:
    repo, out = tmp_path / "repo", tmp_path / "out"
    out.mkdir()
    vecdr.snapshot(vecdr.init(repo), f"faiss:{big}")
    target = f"faiss:{out / 'restored.faiss'}"
    whole = _measure("restore", str(repo), "latest", target, "--force")
    delays = [whole * share for share in (0.2, 0.5, 0.8)]
    cases.plan(len(delays))  # type: ignore[attr-defined]
    stopped = 0
    for delay in delays:
        proc = _start("restore", str(repo), "latest", target, "--force")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        stopped += _stopped_cleanly(proc, signal.SIGTERM) == 143
        _after(repo, out)
        cases.ok()  # type: ignore[attr-defined]
    assert stopped  # at least one stopped mid-way
    (out / "restored.faiss").unlink(missing_ok=True)
    assert run("restore", str(repo), "latest", target).returncode == 0
    assert faiss.read_index(str(out / "restored.faiss")).ntotal == ROWS


@pytest.mark.slow
@pytest.mark.fault("SIGTERM or SIGINT at random points of vecdr snapshot and restore", store="local")
def test_signals_at_random_points(big: Path, tmp_path: Path, cases: object) -> None:
    rng = random.Random(17)
    repo, out = tmp_path / "repo", tmp_path / "out"
    out.mkdir()
    vecdr.init(repo)
    commands = [("snapshot", str(repo), f"faiss:{big}", "--mode", "full"),
                ("restore", str(repo), "latest", f"faiss:{out / 'r.faiss'}", "--force")]
    assert run(*commands[0]).returncode == 0
    whole = max(_measure(*c) for c in commands)
    cases.plan(24)  # type: ignore[attr-defined]
    for i in range(24):
        command, signum = commands[i % 2], (signal.SIGTERM, signal.SIGINT)[i // 2 % 2]
        proc = _start(*command)
        time.sleep(rng.uniform(0.0, whole))
        proc.send_signal(signum)
        _stopped_cleanly(proc, signum)
        _after(repo, out)
        cases.ok()  # type: ignore[attr-defined]
    assert vecdr.verify(str(repo), read_data=True).ok


def _loaded(proc: subprocess.Popen[str], library: str, timeout: float = 60) -> bool:
    """Wait until the process has mapped ``library`` (it is importing the module that loads it)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if library in Path(f"/proc/{proc.pid}/maps").read_text():
                return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see how far start-up got")
@pytest.mark.fault("Ctrl-C while the console script starts up")
def test_ctrl_c_during_start_up_prints_one_line_and_no_traceback(tmp_path: Path, cases: object) -> None:
    vecdr.init(tmp_path / "repo")
    # Libraries that vecdr's own imports load, in order: the signal lands in the middle of them.
    libraries = ["_multiarray_umath", "libarrow.so", "_compute"]
    cases.plan(len(libraries))  # type: ignore[attr-defined]
    for library in libraries:
        proc = _start("snapshots", str(tmp_path / "repo"))
        _loaded(proc, library)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 130), (proc.returncode, err)
        if proc.returncode == 130:
            assert err.strip() == "vecdr: error: interrupted", err
        cases.ok()  # type: ignore[attr-defined]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.fault("lock left by a process killed with SIGKILL", store="local")
def test_a_lock_whose_holder_died_on_this_host_is_stale_at_once(tmp_path: Path) -> None:
    repo = vecdr.init(tmp_path / "repo")
    dead = f"{socket.gethostname()}:{_dead_pid()}"

    def leave(kind: str) -> None:  # as a killed process leaves its lock: 10 minutes to go
        lock = Lock(repo.store, kind, "snapshot of c")
        lock.holder = dead
        repo.store.write(lock.key, lock._body())

    leave("shared")  # a killed snapshot's: prune is not kept waiting
    assert run("prune", str(tmp_path / "repo"), "--grace", "0h").returncode == 0
    leave("exclusive")  # a killed forget's: never broken silently, and the message says why
    assert all(held.stale() for held in list_locks(repo.store))
    refused = run("prune", str(tmp_path / "repo"))
    assert refused.returncode == 1 and "its process is gone" in refused.stderr and "vecdr unlock" in refused.stderr
    unlocked = run("unlock", str(tmp_path / "repo"))  # removes both, without --all
    assert unlocked.returncode == 0 and unlocked.stdout.count("removed") == 2, unlocked.stdout
    assert not list_locks(repo.store)
    assert run("prune", str(tmp_path / "repo")).returncode == 0
    # A live holder's lock (this process) still holds.
    with Lock(repo.store, "shared", "snapshot of c"):
        assert not any(held.stale() for held in list_locks(repo.store))
