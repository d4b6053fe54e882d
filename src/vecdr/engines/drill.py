"""A DR drill: restore a snapshot into a scratch target, measure it against the objectives, clean up.

The drill measures what a real recovery would achieve:

- **RTO**: the restore's wall time, split into fetching and decoding the rows (the
  time the index build waited for them), building the index, and loading or
  publishing it;
- **RPO**: the age of the restored snapshot when the restore finished;
- **rows**: the restored index holds exactly the snapshot's live rows;
- **quality**: the snapshot's stored queries (:mod:`vecdr.format.quality`) run on
  the restored index; recall@k against the exact top-k of the snapshot's rows,
  next to the live index's own recall when the snapshot was taken (their ratio is
  what the quality floor judges) and the share of the live index's answers found.

The scratch target is the production engine's by default (a temporary FAISS file,
a scratch table next to the PostgreSQL source, a scratch Milvus collection, each
under a fresh unique name), or any target URI that does not exist yet: a drill
refuses a target that exists, since it drops its target afterwards and must drop
only what it created. It drops it once the restore has published it, even when
judging it fails; a restore that fails cleans up after itself and the drill drops
nothing. Each drill is appended to the repository's drill history, unless asked
not to: a drill with read-only credentials restores and measures, but cannot record.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from vecdr.backends.base import Target
from vecdr.backends.registry import open_target
from vecdr.engines.quality import exact_top_k, recall
from vecdr.engines.restore import open_snapshot, restore
from vecdr.errors import StoreAccessError, TargetExistsError
from vecdr.format.manifest import Manifest
from vecdr.format.quality import decode_quality
from vecdr.policy import Objectives
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository
from vecdr.repository.drills import record_drill

#: Restore phases (as targets name them) that put rows or the index where they serve:
#: FAISS writes its file, PostgreSQL loads rows by COPY and renames the table, Milvus
#: inserts, flushes and loads the collection.
LOAD = frozenset({"prepare", "create", "load_native", "write", "load", "insert", "insert_wait", "flush", "count",
                  "publish", "rename"})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    measured: float | None
    target: float | None
    passed: bool | None  # None: no target set, or nothing to measure

    def describe(self) -> str:
        state = {True: "pass", False: "FAIL", None: "-"}[self.passed]
        return f"{self.name}: {self.measured} (target {self.target}) {state}"


@dataclass(slots=True)
class DrillResult:
    snapshot: str
    collection: str
    target: str
    started_at: str
    rto_seconds: float
    rto_phases: dict[str, float]
    restore_phases: dict[str, float]
    rpo_seconds: float
    rows_expected: int
    rows_restored: int | None
    queries: int = 0
    k: int = 0
    recall: float | None = None
    source_recall: float | None = None
    recall_ratio: float | None = None
    agreement: float | None = None
    checks: list[Check] = field(default_factory=list)
    history_key: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        return doc


def scratch_target(manifest: Manifest, uri: str | None, folder: str) -> Target:
    """Where a drill restores to: ``uri``, or a scratch place of the production engine.

    Either way the target does not exist yet (:class:`TargetExistsError` otherwise):
    the drill drops it afterwards, and it drops only what it created.
    """
    if uri is not None:
        target = open_target(uri)
        if target.exists():
            raise TargetExistsError(
                f"{uri} already exists; a drill restores only into a target it creates and drops "
                "afterwards: name one that does not exist, or leave --target out for a scratch one"
            )
        return target
    for _ in range(8):
        target = _scratch(manifest, f"vecdr_drill_{uuid.uuid4().hex[:12]}", folder)
        if not target.exists():
            return target
    raise TargetExistsError(f"no free scratch name next to {target.uri}")


def _scratch(manifest: Manifest, scratch: str, folder: str) -> Target:
    source = manifest.source.get("uri") or ""
    option = {"pgvector": "table", "milvus": "collection"}.get(manifest.source.get("backend", ""))
    if option and "?" in source:
        base, _, query = source.partition("?")
        params = {k: v for k, v in parse_qsl(query) if k not in ("id", "vector", "schema")}
        params[option] = scratch
        return open_target(f"{base}?{urlencode(params)}")
    return open_target(f"faiss:{folder}/{scratch}.faiss")


def _rto_phases(phases: dict[str, float], total: float) -> dict[str, float]:
    """The restore's wall time as fetch and decode (the time the build waited for rows),
    load (moving rows and the index to where they serve), and build (the rest)."""
    fetch = phases.get("read_wait", 0.0)
    load = sum(seconds for name, seconds in phases.items() if name in LOAD)
    return {"fetch_decode": round(fetch, 6), "build": round(max(0.0, total - fetch - load), 6), "load": round(load, 6)}


def drill(
    repo: Repository,
    ref: str | None = "latest",
    *,
    collection: str | None = None,
    target: str | None = None,
    objectives: Objectives | None = None,
    record: bool = True,
    reporter: Reporter = NULL,
) -> DrillResult:
    """Restore snapshot ``ref`` into a scratch target and judge it (see the module)."""
    objectives = objectives or Objectives()
    started_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    manifest = open_snapshot(repo, ref, collection, reporter=reporter)
    folder = tempfile.mkdtemp(prefix="vecdr-drill-")
    try:
        scratch = scratch_target(manifest, target, folder)
        t0 = time.perf_counter()
        # A failed restore removes what it made itself; a target it refused is not ours.
        restored = restore(repo, scratch, manifest.snapshot, collection=manifest.collection, reporter=reporter)
        rto = time.perf_counter() - t0
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        result = DrillResult(
            snapshot=manifest.snapshot, collection=manifest.collection, target=scratch.uri,
            started_at=started_at, rto_seconds=round(rto, 6), rto_phases=_rto_phases(restored.phases, rto),
            restore_phases=restored.phases, rpo_seconds=restored.snapshot_age_seconds,
            rows_expected=manifest.rows, rows_restored=scratch.count(),
        )
        _judge_quality(repo, manifest, scratch, result, reporter)
    finally:
        try:
            scratch.drop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    rows_ok = None if result.rows_restored is None else result.rows_restored == result.rows_expected
    result.checks = [
        Check("rto_seconds", result.rto_seconds, objectives.rto_seconds,
              None if objectives.rto_seconds is None else result.rto_seconds <= objectives.rto_seconds),
        Check("rpo_seconds", result.rpo_seconds, objectives.rpo_seconds,
              None if objectives.rpo_seconds is None else result.rpo_seconds <= objectives.rpo_seconds),
        Check("rows", result.rows_restored, result.rows_expected, rows_ok),
        Check("recall_ratio", result.recall_ratio, objectives.min_recall,
              None if objectives.min_recall is None or result.recall_ratio is None
              else result.recall_ratio >= objectives.min_recall),
    ]
    if objectives.min_recall is not None and result.recall_ratio is None:
        result.checks[-1] = Check("recall_ratio", None, objectives.min_recall, False)  # a floor nothing can meet
    if record:
        try:
            result.history_key = record_drill(repo.store, {k: v for k, v in result.to_dict().items()
                                                           if k != "history_key"})
        except StoreAccessError as exc:
            outcome = "passed" if result.passed else "failed"
            raise StoreAccessError(
                f"{exc}; the drill ran ({outcome}, RTO {result.rto_seconds:.1f}s) but its record was not "
                "written: with read-only credentials, drill without recording (--no-record)"
            ) from exc
    return result


def _judge_quality(repo: Repository, manifest: Manifest, scratch: Target, result: DrillResult,
                   reporter: Reporter) -> None:
    ref = manifest.artifacts.get("quality")
    if ref is None:
        reporter.warn(f"snapshot {manifest.snapshot[:12]} keeps no quality sample: recall is not measured")
        return
    sample = decode_quality(repo.get(ref), ref.key)
    found = scratch.search(sample.queries, sample.k)
    if found is None:
        reporter.warn(f"the {scratch.backend} target cannot search: recall is not measured")
        return
    truth = exact_top_k(repo, manifest, sample.queries, sample.k, sample.metric)
    live = sample.answers if sample.answers is not None else truth
    result.queries, result.k = len(sample.queries), sample.k
    result.recall = round(recall(found, truth, sample.k), 6)
    result.source_recall = round(recall(live, truth, sample.k), 6)
    result.recall_ratio = round(result.recall / result.source_recall, 6) if result.source_recall else None
    result.agreement = round(recall(found, live, sample.k), 6)
