"""Where each collection stands against its objectives: snapshot age, pending changes, last drill.

The achieved RPO is what a disaster now would lose: the age of the newest
snapshot, or zero when the collection's source is tracked and holds no change
since that snapshot. The last drill's RTO and quality come from the drill history.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from vecdr.backends.registry import open_source
from vecdr.durable import replacing
from vecdr.errors import VecdrError
from vecdr.policy import Objectives, Policy
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository
from vecdr.repository.commits import skipped
from vecdr.repository.drills import drill_history
from vecdr.repository.resolve import parse_time


@dataclass(slots=True)
class CollectionStatus:
    collection: str
    snapshots: int
    latest: str | None
    latest_at: str | None
    snapshot_age_seconds: float | None
    pending_changes: int | None  # tracked sources: changes not yet in any snapshot
    rpo_seconds: float | None  # what a disaster now would lose
    rpo_target_seconds: float | None
    rto_target_seconds: float | None
    min_recall: float | None
    last_drill_at: str | None = None
    last_drill_rto_seconds: float | None = None
    last_drill_recall_ratio: float | None = None
    last_drill_passed: bool | None = None

    @property
    def rpo_met(self) -> bool | None:
        if self.rpo_target_seconds is None:
            return None
        return self.rpo_seconds is not None and self.rpo_seconds <= self.rpo_target_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rpo_met": self.rpo_met}


def _pending(source_uri: str, latest: str | None, reporter: Reporter) -> int | None:
    """Changes the source's journal holds since ``latest``; None if it keeps none or cannot say."""
    try:
        source = open_source(source_uri)
    except VecdrError as exc:
        reporter.warn(f"cannot open {source_uri} to count its pending changes: {exc}")
        return None
    try:
        changes = source.changes()
        if changes is None or changes.problem is not None or changes.base != latest:
            return None
        return int(changes.upserts.num_rows + len(changes.deletes))
    except VecdrError as exc:
        reporter.warn(f"cannot read the change journal of {source_uri}: {exc}")
        return None
    finally:
        source.close()


def status(repo: Repository, policy: Policy | None = None, reporter: Reporter = NULL) -> list[CollectionStatus]:
    """Every collection of the repository and of the policy, with its objectives."""
    commits = repo.commits(lambda exc: reporter.warn(skipped(exc)))
    names = sorted({c.collection for c in commits} | set(policy.collections if policy else ()))
    drills = drill_history(repo.store)
    now = datetime.now(UTC)
    out = []
    for name in names:
        mine = [c for c in commits if c.collection == name]
        latest = mine[-1] if mine else None
        objectives = policy.objectives(name) if policy else Objectives()
        age = (now - parse_time(latest.created_at)).total_seconds() if latest else None
        configured = policy.collections.get(name) if policy else None
        pending = _pending(configured.source, latest.snapshot if latest else None, reporter) \
            if configured is not None and configured.source else None
        rpo = 0.0 if pending == 0 else age
        row = CollectionStatus(
            collection=name, snapshots=len(mine), latest=latest.snapshot if latest else None,
            latest_at=latest.created_at if latest else None,
            snapshot_age_seconds=round(age, 3) if age is not None else None, pending_changes=pending,
            rpo_seconds=round(rpo, 3) if rpo is not None else None, rpo_target_seconds=objectives.rpo_seconds,
            rto_target_seconds=objectives.rto_seconds, min_recall=objectives.min_recall,
        )
        last = [d for d in drills if d.get("collection") == name]
        if last:
            row.last_drill_at = last[-1].get("started_at")
            row.last_drill_rto_seconds = last[-1].get("rto_seconds")
            row.last_drill_recall_ratio = last[-1].get("recall_ratio")
            row.last_drill_passed = last[-1].get("passed")
        out.append(row)
    return out


#: metric name -> (help, field)
METRICS = {
    "vecdr_snapshot_age_seconds": ("Age of the newest snapshot", "snapshot_age_seconds"),
    "vecdr_snapshots": ("Snapshots kept", "snapshots"),
    "vecdr_pending_changes": ("Changes recorded by a tracked source since the newest snapshot", "pending_changes"),
    "vecdr_rpo_seconds": ("What a disaster now would lose, in seconds", "rpo_seconds"),
    "vecdr_rpo_target_seconds": ("RPO target", "rpo_target_seconds"),
    "vecdr_rto_target_seconds": ("RTO target", "rto_target_seconds"),
    "vecdr_rpo_met": ("1 when the achieved RPO meets its target", "rpo_met"),
    "vecdr_last_restore_seconds": ("RTO measured by the last drill", "last_drill_rto_seconds"),
    "vecdr_drill_recall": ("Recall ratio (restored / live) measured by the last drill", "last_drill_recall_ratio"),
    "vecdr_drill_passed": ("1 when the last drill met every target", "last_drill_passed"),
}


def prometheus_text(rows: list[CollectionStatus]) -> str:
    """The node-exporter textfile format: one gauge family per metric, a sample per collection."""
    lines = []
    for metric, (help_text, name) in METRICS.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for row in rows:
            value = getattr(row, name)
            if value is None:
                continue
            label = row.collection.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{metric}{{collection="{label}"}} {float(value):g}')
    return "\n".join(lines) + "\n"


def write_prometheus(rows: list[CollectionStatus], path: str) -> None:
    """Write the textfile atomically, as node-exporter's textfile collector expects."""
    with replacing(os.path.abspath(path)) as tmp:
        tmp.write_text(prometheus_text(rows))
