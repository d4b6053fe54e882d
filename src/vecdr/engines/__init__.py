"""Engines: one verb each. They take a repository and a backend, and report progress."""

from vecdr.engines.export import export
from vecdr.engines.restore import RestoreResult, open_snapshot, restore
from vecdr.engines.snapshot import SnapshotResult, snapshot
from vecdr.engines.verify import VerifyReport, verify

__all__ = [
    "RestoreResult",
    "SnapshotResult",
    "VerifyReport",
    "export",
    "open_snapshot",
    "restore",
    "snapshot",
    "verify",
]
