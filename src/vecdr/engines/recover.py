"""Progressive recovery: restore every collection of a policy, most critical first.

Collections are restored one after another in priority order (the tiers' order,
then ``priority``, then name), each starting as soon as the one before it is
serving, so the most critical is back first. Each collection's achieved RTO is the
time from the start of the recovery until its restore was published, judged
against its RTO target. A collection that fails does not stop the others: every
one is attempted and the failures are reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from vecdr.backends.registry import open_target
from vecdr.engines.restore import restore
from vecdr.errors import UsageError, VecdrError
from vecdr.policy import Policy
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository


@dataclass(slots=True)
class Recovered:
    collection: str
    priority: int
    target: str
    snapshot: str | None = None
    rows: int | None = None
    restore_seconds: float | None = None
    rto_seconds: float | None = None  # since the recovery started: what the collection's users waited
    rto_target_seconds: float | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        return self.rto_target_seconds is None or (self.rto_seconds or 0) <= self.rto_target_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(slots=True)
class RecoveryResult:
    collections: list[Recovered] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.collections)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "seconds": self.seconds, "collections": [c.to_dict() for c in self.collections]}


def recover(repo: Repository, policy: Policy, *, force: bool = False, reporter: Reporter = NULL) -> RecoveryResult:
    """Restore each collection's latest snapshot into its ``target``, in priority order."""
    plan = policy.ordered()
    missing = [c.name for c in plan if not c.target]
    if missing:
        raise UsageError(f"{policy.path or 'the policy'}: collections without a target to recover into: "
                         f"{', '.join(missing)}")
    if not plan:
        raise UsageError(f"{policy.path or 'the policy'} names no collections")
    result = RecoveryResult()
    started = time.perf_counter()
    for entry in plan:
        assert entry.target is not None
        done = Recovered(entry.name, entry.priority, entry.target, rto_target_seconds=entry.objectives.rto_seconds)
        result.collections.append(done)
        try:
            restored = restore(repo, open_target(entry.target), "latest", collection=entry.name, force=force,
                               reporter=reporter)
        except VecdrError as exc:
            done.error = " ".join(str(exc).split())
            reporter.warn(f"recovering {entry.name!r} failed: {done.error}")
            continue
        done.snapshot, done.rows, done.restore_seconds = restored.snapshot, restored.rows, restored.seconds
        done.target = restored.target
        done.rto_seconds = round(time.perf_counter() - started, 6)
    result.seconds = round(time.perf_counter() - started, 6)
    return result
