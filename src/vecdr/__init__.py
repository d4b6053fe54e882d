"""vecdr: backup and disaster recovery for vector indexes.

    import vecdr
    repo = vecdr.init("s3://backups/vectors")          # or vecdr.open_repository(...)
    vecdr.snapshot(repo, "faiss:/data/index.faiss")   # full, then incremental
    vecdr.restore(repo, "faiss:/data/restored.faiss", "latest")
    index = vecdr.restore_index(repo, "latest")       # a FAISS index in memory
"""

from __future__ import annotations

# isort: off
from vecdr import _console  # noqa: F401  (first of all: the console script's start-up stops quietly)
# isort: on

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vecdr import errors
from vecdr.backends.base import Source, Target
from vecdr.backends.registry import check_droppable, local_file, open_source, open_target
from vecdr.engines import RestoreResult, SnapshotResult, VerifyReport
from vecdr.engines import export as _export
from vecdr.engines import restore as _restore
from vecdr.engines import snapshot as _snapshot
from vecdr.engines import verify as _verify
from vecdr.engines.compact import CompactResult
from vecdr.engines.compact import compact as _compact
from vecdr.engines.drill import DrillResult
from vecdr.engines.drill import drill as _drill
from vecdr.engines.forget import ForgetResult, Retention, parse_duration
from vecdr.engines.forget import forget as _forget
from vecdr.engines.prune import DEFAULT_GRACE, PruneResult
from vecdr.engines.prune import prune as _prune
from vecdr.engines.recover import RecoveryResult
from vecdr.engines.recover import recover as _recover
from vecdr.engines.repair import RepairResult
from vecdr.engines.repair import repair as _repair
from vecdr.engines.snapshot import DIFF_PASS_ROWS, QUALITY_MAX
from vecdr.engines.status import CollectionStatus
from vecdr.engines.status import status as _status
from vecdr.errors import VecdrError
from vecdr.policy import Objectives, Policy, load_policy
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, pick_collection
from vecdr.repository.commits import skipped
from vecdr.repository.drills import drill_history
from vecdr.repository.resolve import check_ref, check_tag

__all__ = [
    "Repository",
    "RestoreResult",
    "SnapshotResult",
    "VecdrError",
    "VerifyReport",
    "compact",
    "drill",
    "drills",
    "errors",
    "export",
    "forget",
    "init",
    "open_repository",
    "prune",
    "recover",
    "repair",
    "restore",
    "restore_index",
    "snapshot",
    "snapshots",
    "status",
    "verify",
]

RepoLike = Repository | str | os.PathLike[str]


def init(
    url: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    *,
    encrypt: bool = False,
    key: bytes | str | None = None,
    password: str | None = None,
) -> Repository:
    """Create an empty repository at a path or fsspec URL.

    ``storage_options`` configure the store (S3 endpoint, region, server-side
    encryption, credentials, transfer concurrency; see docs/storage.md).
    ``encrypt=True`` encrypts every object on the client with AES-256-GCM under
    ``key`` (32 bytes or 64 hex digits) or a key derived from ``password`` (by
    default ``VECDR_KEY`` or ``VECDR_PASSWORD``); see docs/security.md.
    """
    with _reaching(url):
        return Repository.init(url, storage_options, encrypt=encrypt, key=key, password=password)


def open_repository(
    url: RepoLike,
    storage_options: dict[str, Any] | None = None,
    *,
    key: bytes | str | None = None,
    password: str | None = None,
) -> Repository:
    """Open the repository at a path or URL (a :class:`Repository` is returned as is).

    An encrypted repository needs ``key`` or ``password``, or ``VECDR_KEY`` or
    ``VECDR_PASSWORD`` in the environment.
    """
    if isinstance(url, Repository):
        return url
    with _reaching(url):
        return Repository.open(url, storage_options, key=key, password=password)


#: fsspec filesystems that can read but never write or list a repository.
_READ_ONLY_SCHEMES = ("http", "https")


@contextmanager
def _reaching(url: Any) -> Iterator[None]:
    """Opening a store: a URL scheme that cannot hold a repository, or a host that cannot be
    reached (a name that does not resolve, a refused connection), is a typed error."""
    from vecdr.store import redact_url

    text = os.fspath(url) if isinstance(url, str | os.PathLike) else None
    scheme = text.split("://", 1)[0].lower() if isinstance(text, str) and "://" in text else ""
    if scheme in _READ_ONLY_SCHEMES:
        raise errors.UsageError(f"{scheme}:// URLs are read-only and cannot be listed: a repository lives on a "
                                "local path, s3://, gs://, az:// or memory://")
    try:
        yield
    except (socket.gaierror, ConnectionRefusedError, TimeoutError) as exc:
        raise errors.StoreUnreachableError(
            f"cannot reach {redact_url(str(text))}: {' '.join(str(exc).split())}") from exc


def _as_source(source: Any, embeddings: Any = None) -> Source:
    if isinstance(source, Source):
        return source
    if isinstance(source, str):
        _text("the source URI", source)
        if embeddings is not None and not source.lower().startswith("faiss:"):
            raise errors.UsageError("embeddings apply only to FAISS sources")
        return open_source(source, **({"embeddings": embeddings} if embeddings is not None else {}))
    if source is None or isinstance(source, bytes | int | float | os.PathLike | list | tuple | dict):
        raise errors.UsageError(
            f"a source is a URI (faiss:PATH, parquet:PATH, …), a FAISS index, a TrackedIndex or a vecdr "
            f"Source, not {type(source).__name__}"
        )
    from vecdr.backends.faiss import FaissSource  # a faiss.Index or TrackedIndex object

    return FaissSource(source, embeddings=embeddings)


def _text(what: str, value: Any) -> str:
    """``value``, if it is a name that can be stored: a non-empty string of valid UTF-8."""
    if not isinstance(value, str) or not value.strip():
        raise errors.UsageError(f"{what} must be a non-empty string, not {value!r}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise errors.UsageError(f"{what} {value!r} is not valid UTF-8") from None
    return value


def _whole_numbers(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise errors.UsageError(f"{name} must be a whole number, not {value!r}")


def snapshot(
    repo: RepoLike,
    source: Any,
    *,
    collection: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    with_index: bool = False,
    embeddings: Any = None,
    mode: str = "auto",
    allow_nonfinite: bool = False,
    reporter: Reporter = NULL,
    diff_pass_rows: int = DIFF_PASS_ROWS,
    quality_sample: int | None = None,
) -> SnapshotResult:
    """Snapshot a source (URI, FAISS index, ``vecdr.faiss.TrackedIndex`` or Source) and commit it.

    ``diff_pass_rows`` bounds how many previous rows a diff holds at once (about 34
    bytes each) for sources that scan id ranges (pgvector); larger collections are
    compared one id range at a time. ``quality_sample``: query vectors (with the
    source index's answers) kept for drills; default 32 for a new collection, then
    as the previous snapshot did; 0 for none; at most ``QUALITY_MAX`` (10,000) and
    never more than the source's rows.
    """
    if collection is not None:
        _text("the collection name", collection)
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise errors.UsageError(f"tags must be a list of names, not {tags!r}")
    for tag in tags:
        check_tag(_text("a tag", tag))
    if quality_sample is not None:
        _whole_numbers(quality_sample=quality_sample)
        if not 0 <= quality_sample <= QUALITY_MAX:
            raise errors.UsageError(f"quality_sample must be between 0 and {QUALITY_MAX:,}, not {quality_sample:,}")
    src = _as_source(source, embeddings)
    try:
        return _snapshot(
            open_repository(repo), src, collection=collection, tags=tags, with_index=with_index,
            mode=mode, allow_nonfinite=allow_nonfinite, reporter=reporter, diff_pass_rows=diff_pass_rows,
            quality_sample=quality_sample,
        )
    finally:
        src.close()


def snapshots(repo: RepoLike, collection: str | None = None) -> list[dict[str, Any]]:
    """Committed snapshots, oldest first."""
    import warnings

    commits = open_repository(repo).commits(
        lambda exc: warnings.warn(skipped(exc), stacklevel=3)
    )
    if collection is not None:
        pick_collection(commits, collection)  # an unknown collection is an error, not an empty list
    out = []
    for c in commits:
        if collection is None or c.collection == collection:
            out.append({"id": c.snapshot, "seq": c.seq, "collection": c.collection,
                        "created_at": c.created_at, "tags": list(c.tags), "rows": c.rows,
                        "parent": c.parent})
    return out


def restore(
    repo: RepoLike,
    target: str | Target,
    snapshot: str | None = "latest",
    *,
    collection: str | None = None,
    as_of: str | datetime | None = None,
    force: bool = False,
    reporter: Reporter = NULL,
    **target_options: Any,
) -> RestoreResult:
    """Restore a snapshot into a target URI (``faiss:PATH``, ``parquet:PATH``) or Target."""
    if not isinstance(target, str | Target):
        raise errors.UsageError(f"a target is a URI (faiss:PATH, parquet:PATH, …) or a vecdr Target, not "
                                f"{type(target).__name__}")
    repository = open_repository(repo)
    # A file inside the repository is refused before the target is even opened.
    _outside(repository, local_file(target) if isinstance(target, str) else getattr(target, "path", None),
             "the restore target")
    tgt = open_target(target, **target_options) if isinstance(target, str) else target
    return _restore(repository, tgt, snapshot, collection=collection, as_of=as_of,
                    force=force, reporter=reporter)


def _local_root(repository: Repository) -> Path | None:
    """The folder a repository on local disk lives in (symlinks resolved); None elsewhere."""
    from vecdr.store import LocalStore

    store: Any = repository.store
    while store is not None and not isinstance(store, LocalStore):
        store = getattr(store, "inner", None)
    return Path(store.root).resolve() if store is not None else None


def _outside(repository: Repository, path: str | os.PathLike[str] | None, what: str) -> None:
    """Refuse a file to write that lies inside the repository: a restore --force there would
    replace the repository's own objects."""
    root = _local_root(repository) if path is not None else None
    if root is None or path is None:
        return
    where = Path(path).resolve()
    if where == root or root in where.parents:
        raise errors.TargetError(f"{what} {os.fspath(path)} lies inside the repository at {root}; "
                                 "write it somewhere else")


def restore_index(
    repo: RepoLike,
    snapshot: str | None = "latest",
    *,
    collection: str | None = None,
    as_of: str | datetime | None = None,
    factory: str | None = None,
    gpu: str | bool | None = "auto",
    reporter: Reporter = NULL,
) -> Any:
    """Restore a snapshot into an in-memory FAISS index and return it (``gpu``: see docs/gpu.md)."""
    from vecdr.backends.faiss import FaissTarget, fi

    target = FaissTarget(None, factory=factory, gpu=gpu)
    _restore(open_repository(repo), target, snapshot, collection=collection, as_of=as_of,
             reporter=reporter)
    if target.index is None and target.blob is not None:
        return fi.deserialize(target.blob)
    return target.index


def verify(repo: RepoLike, read_data: bool = False, reporter: Reporter = NULL) -> VerifyReport:
    return _verify(open_repository(repo), read_data=read_data, reporter=reporter)


def export(
    repo: RepoLike,
    snapshot: str | None,
    out: str | os.PathLike[str],
    *,
    collection: str | None = None,
    force: bool = False,
    reporter: Reporter = NULL,
) -> dict[str, object]:
    """Export a snapshot's live rows to Parquet, or to ``.npy`` (vectors) plus ``.ids.npy``.

    ``.npy`` cannot hold a string id ending in a NUL character (numpy drops trailing
    NULs, so ``"x\\0"`` would become ``"x"``): such a snapshot exports to Parquet only.
    """
    repository = open_repository(repo)
    if not isinstance(out, str | os.PathLike):
        raise errors.UsageError(f"the export destination is a path, not {type(out).__name__}")
    if not os.fspath(out).strip():
        raise errors.UsageError("the export destination is empty")
    path = Path(out)
    for p in (path, path.with_suffix(".ids.npy")) if path.suffix == ".npy" else (path,):
        _outside(repository, p, "the export destination")
    return _export(repository, snapshot, out, collection=collection, force=force, reporter=reporter)


def forget(
    repo: RepoLike,
    snapshots: list[str] | tuple[str, ...] = (),
    *,
    keep_last: int = 0,
    keep_hourly: int = 0,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
    keep_yearly: int = 0,
    keep_within: str | timedelta | None = None,
    keep_tags: list[str] | tuple[str, ...] = (),
    collection: str | None = None,
    dry_run: bool = False,
    reporter: Reporter = NULL,
) -> ForgetResult:
    """Forget the named snapshots, or those a restic-like retention policy does not keep.

    Their objects stay until :func:`prune`. See docs/maintenance.md.
    """
    _whole_numbers(keep_last=keep_last, keep_hourly=keep_hourly, keep_daily=keep_daily, keep_weekly=keep_weekly,
                   keep_monthly=keep_monthly, keep_yearly=keep_yearly)
    if isinstance(snapshots, str):
        raise errors.UsageError(f"snapshots must be a list of references, not {snapshots!r}")
    for ref in snapshots:  # before the repository is locked
        check_ref(ref)
    within = parse_duration(keep_within) if isinstance(keep_within, str) else keep_within
    retention = Retention(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, within,
                          tuple(keep_tags))
    return _forget(open_repository(repo), retention, tuple(snapshots), collection, dry_run, reporter)


def prune(
    repo: RepoLike, *, grace: str | timedelta = DEFAULT_GRACE, dry_run: bool = False, reporter: Reporter = NULL
) -> PruneResult:
    """Delete objects no snapshot uses that are older than ``grace`` (default 24 hours)."""
    period = parse_duration(grace) if isinstance(grace, str) else grace
    return _prune(open_repository(repo), period, dry_run, reporter)


def compact(
    repo: RepoLike, snapshot: str = "latest", *, collection: str | None = None, reporter: Reporter = NULL
) -> CompactResult:
    """Rewrite a collection's latest snapshot as a new one without dead rows or small segments."""
    if snapshot is not None:
        check_ref(snapshot)  # before the repository is locked
    return _compact(open_repository(repo), snapshot, collection, reporter)


def drill(
    repo: RepoLike,
    snapshot: str | None = "latest",
    *,
    collection: str | None = None,
    target: str | None = None,
    objectives: Objectives | None = None,
    policy: str | os.PathLike[str] | Policy | None = None,
    record: bool = True,
    reporter: Reporter = NULL,
) -> DrillResult:
    """Restore a snapshot into a scratch target, measure RTO, RPO, rows and recall, clean up.

    The objectives come from ``objectives``, else from the collection's entry in
    ``policy`` (a :class:`Policy` or a TOML path). See docs/drills.md.
    """
    repository = open_repository(repo)
    if target is not None:
        if not isinstance(target, str):
            raise errors.UsageError(f"a drill target is a URI, not {type(target).__name__}")
        check_droppable(target)
        _outside(repository, local_file(target), "the drill target")
    if objectives is None and policy is not None:
        loaded = policy if isinstance(policy, Policy) else load_policy(policy)
        name = collection or _drill_collection(repository, snapshot)
        objectives = loaded.objectives(name)
    return _drill(repository, snapshot, collection=collection, target=target, objectives=objectives,
                  record=record, reporter=reporter)


def repair(
    repo: RepoLike,
    source: Any = None,
    *,
    embeddings: Any = None,
    collection: str | None = None,
    dry_run: bool = False,
    forget_unrepairable: bool = False,
    reporter: Reporter = NULL,
) -> RepairResult:
    """Check every object the repository's snapshots reference and mend the damaged ones.

    Row-hash sidecars are rebuilt from their segments; segments from ``source`` (a URI,
    FAISS index or Source holding the collection's rows), only ever with the bytes the
    object's name promises. Snapshots that stay damaged are kept unless
    ``forget_unrepairable``. ``dry_run`` changes nothing. See docs/maintenance.md.
    """
    if collection is not None:
        _text("the collection name", collection)
    if source is None and embeddings is not None:
        raise errors.UsageError("embeddings apply only with a source")
    src = _as_source(source, embeddings) if source is not None else None
    try:
        return _repair(open_repository(repo), src, collection=collection, dry_run=dry_run,
                       forget_unrepairable=forget_unrepairable, reporter=reporter)
    finally:
        if src is not None:
            src.close()


def _drill_collection(repo: Repository, snapshot: str | None) -> str:
    from vecdr.repository import resolve

    return resolve(repo.commits(), snapshot).collection


def drills(repo: RepoLike, collection: str | None = None) -> list[dict[str, Any]]:
    """Past drills recorded in the repository, oldest first."""
    return drill_history(open_repository(repo).store, collection)


def status(repo: RepoLike, policy: str | os.PathLike[str] | Policy | None = None,
           reporter: Reporter = NULL) -> list[CollectionStatus]:
    """Each collection's newest snapshot age, pending changes and last drill, against its objectives."""
    loaded = policy if isinstance(policy, Policy) or policy is None else load_policy(policy)
    return _status(open_repository(repo), loaded, reporter)


def recover(repo: RepoLike | None = None, policy: str | os.PathLike[str] | Policy | None = None, *,
            force: bool = False, reporter: Reporter = NULL) -> RecoveryResult:
    """Restore every collection of ``policy`` into its target, most critical first."""
    if policy is None:
        raise errors.UsageError("recover needs a policy file naming each collection's target")
    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    location = repo if repo is not None else loaded.repository
    if location is None:
        raise errors.UsageError("name the repository (argument, VECDR_REPOSITORY, or `repository =` in the policy)")
    repository = open_repository(location)
    for entry in loaded.collections.values():
        if entry.target:
            _outside(repository, local_file(entry.target), f"the target of {entry.name!r}")
    return _recover(repository, loaded, force=force, reporter=reporter)


def __getattr__(name: str) -> Any:
    # ``vecdr.faiss`` imports faiss, an optional extra: load it on first use.
    if name == "faiss":
        import importlib

        return importlib.import_module("vecdr.faiss")
    raise AttributeError(f"module 'vecdr' has no attribute {name!r}")
