"""The real ``vecdr`` console script in a subprocess, and the shape of its failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: Variables of the calling environment that would change what a command does.
CLEARED = ("VECDR_REPOSITORY", "VECDR_KEY", "VECDR_PASSWORD", "VECDR_DEBUG")


def console_script() -> str:
    found = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")
    assert found, "the vecdr console script is not installed"
    return found


def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``vecdr ARGS…`` with the caller's environment less :data:`CLEARED`, plus ``env``."""
    full = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full.update(env or {})
    return subprocess.run([console_script(), *args], capture_output=True, text=True, env=full, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A vecdr error: status neither 0 nor 70 (unexpected), exactly one ``vecdr: error:`` line
    on stderr, no traceback; returns the line."""
    assert proc.returncode not in (0, 70), (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vecdr: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
