"""vecdr benchmarks: one entry point for every suite.

    python -m benchmarks SUITE [options]     # options go to the suite (SUITE --help lists them)
    python -m benchmarks all [--quick]       # every CPU suite in turn
    python -m benchmarks --help              # the suites

Each suite runs in its own process, exactly as ``python benchmarks/FILE.py [options]``
would: the suites start servers and worker processes of their own, and a suite that
fails must not take the next one down with it. See benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Suite:
    script: str
    about: str
    cpu: bool = True  # part of `all`
    #: what ``--quick`` becomes for a suite without a quick mode of its own
    quick: tuple[str, ...] = ("--quick",)


SUITES: dict[str, Suite] = {
    "core": Suite("run.py", "snapshot size and time, incrementals, FAISS restores, read throughput"),
    "pgvector": Suite("pgvector.py", "pgvector snapshot and restore against pg_dump / pg_restore, peak RSS"),
    "pgvector-scale": Suite("pgvector_scale.py", "pgvector snapshot peak RSS at 1M, 3M and 10M rows"),
    "milvus": Suite("milvus.py", "Milvus Lite snapshot and restore against pymilvus's own paths"),
    "s3": Suite("s3.py", "snapshot and restore throughput on S3 (moto's server), bytes PUT"),
    "rebuild": Suite("rebuild.py", "rebuild time across N, dimension, index type, backend and repository"),
    "gpu": Suite(
        "gpu.py", "FAISS restores built on a GPU against the CPU (needs a GPU build of faiss and a GPU)",
        cpu=False, quick=("--rows", "50000", "--dims", "32", "--out", str(HERE / "results" / "quick-gpu.json")),
    ),
}


def usage() -> str:
    width = max(map(len, SUITES))
    lines = [
        "usage: python -m benchmarks SUITE [options]",
        "       python -m benchmarks all [--quick]",
        "",
        "suites (`python -m benchmarks SUITE --help` lists a suite's options):",
    ]
    lines += [f"  {name.ljust(width)}  {s.about} (benchmarks/{s.script})" for name, s in SUITES.items()]
    lines += [f"  {'all'.ljust(width)}  every suite above but gpu, in turn; --quick is passed to each"]
    return "\n".join(lines)


def command(name: str, options: list[str]) -> list[str]:
    suite = SUITES[name]
    if "--quick" in options and suite.quick != ("--quick",):
        options = [o for o in options if o != "--quick"] + list(suite.quick)
    return [sys.executable, str(HERE / suite.script), *options]


def run_suite(name: str, options: list[str]) -> int:
    return subprocess.run(command(name, options)).returncode


def run_all(options: list[str]) -> int:
    """Every CPU suite in turn; a failed suite is reported and the next one still runs."""
    unknown = [o for o in options if o != "--quick"]
    if unknown:
        print(f"`all` takes only --quick (suites' options differ), not {' '.join(unknown)}", file=sys.stderr)
        return 2
    outcome: list[tuple[str, int, float]] = []
    for name, suite in SUITES.items():
        if not suite.cpu:
            continue
        print(f"\n== {name} ==", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rc = run_suite(name, options)
        outcome.append((name, rc, time.perf_counter() - t0))
    print("\nsuite           exit  seconds")
    for name, rc, seconds in outcome:
        print(f"{name:<15} {rc:>4}  {seconds:>7.0f}")
    return 0 if all(rc == 0 for _, rc, _ in outcome) else 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, options = argv[0], argv[1:]
    if name == "all":
        return run_all(options)
    if name not in SUITES:
        print(f"unknown suite {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_suite(name, options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
