"""The ``vecdr`` command: parses, calls one engine, prints. No logic of its own.

Every command takes ``--json`` and then prints exactly one JSON document. Errors
print one line to stderr and exit non-zero; ``VECDR_DEBUG=1`` shows the traceback
of an unexpected error (a bug), never of an ordinary vecdr error.
``VECDR_REPOSITORY`` may stand for the REPO argument.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

import vecdr
from vecdr.cli import output
from vecdr.cli import pgvector as pgvector_cli
from vecdr.engines.snapshot import QUALITY_MAX
from vecdr.errors import UsageError, VecdrError
from vecdr.store import keys
from vecdr.store.oserrors import DENIED, FULL, cause

REPO_ENV = "VECDR_REPOSITORY"


class RepoCommand(TyperCommand):
    """Lets ``VECDR_REPOSITORY`` stand for the leading REPO argument, the same way for every command.

    With the variable set, a command given fewer positional arguments than it can
    take gets the variable's value as REPO in front of them: ``vecdr drill``,
    ``vecdr show SNAPSHOT``, ``vecdr forget SNAPSHOT…``. Giving every positional
    argument names REPO explicitly (not possible for ``forget``, which takes any
    number of snapshots). ``restore`` counts as REPO SNAPSHOT TARGET even with
    ``--as-of``, which stands for SNAPSHOT: ``vecdr restore [REPO] TARGET --as-of TIME``.
    """

    def _positions(self, args: list[str]) -> list[int]:
        takes_value = set()
        for param in self.params:
            if getattr(param, "param_type_name", "") == "option" and not getattr(param, "is_flag", False):
                takes_value.update(param.opts)
        found, i = [], 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                found.extend(range(i + 1, len(args)))
                break
            if arg.startswith("-") and arg != "-":
                if arg in takes_value:
                    i += 1
            else:
                found.append(i)
            i += 1
        return found

    def _most(self) -> float:
        """How many positional arguments the command takes at most."""
        arguments = [p for p in self.params if getattr(p, "param_type_name", "") == "argument"]
        return float("inf") if any(getattr(p, "nargs", 1) == -1 for p in arguments) else len(arguments)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--help" not in args:
            args = list(args)
            env = os.environ.get(REPO_ENV)
            if env and len(self._positions(args)) < self._most():
                args.insert(0, env)
            if self.name == "restore" and any(a == "--as-of" or a.startswith("--as-of=") for a in args):
                # --as-of stands for SNAPSHOT: the arguments are REPO TARGET.
                positions = self._positions(args)
                if len(positions) >= 3:
                    hint = f" ({REPO_ENV} is set, so the arguments are SNAPSHOT TARGET)" if env else ""
                    raise UsageError(f"give either a SNAPSHOT or --as-of, not both{hint}")
                if len(positions) == 1:
                    raise UsageError(f"missing argument REPO (or set {REPO_ENV})")
                if len(positions) == 2:
                    args.insert(positions[-1], "latest")
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="vecdr",
    help="Backup and disaster recovery for vector indexes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(pgvector_cli.app)

#: Storage options given on the command line travel as the environment variables
#: the store reads (AWS's own where there is one), so every command sees them.
STORAGE_ENV = {
    "endpoint_url": ("AWS_ENDPOINT_URL",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "sse": ("VECDR_S3_SSE",),
    "sse_kms_key_id": ("VECDR_S3_SSE_KMS_KEY_ID",),
    "concurrency": ("VECDR_CONCURRENCY",),
}


@app.callback()
def storage(
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint (MinIO, R2, Ceph…); AWS_ENDPOINT_URL.")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="The bucket's region; AWS_REGION.")] = None,
    sse: Annotated[
        str | None, typer.Option("--sse", help="Server-side encryption of new objects: AES256 or aws:kms.")
    ] = None,
    sse_kms_key_id: Annotated[
        str | None, typer.Option("--sse-kms-key-id", help="KMS key for --sse aws:kms (implies it).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Transfers at once (default 8 on object stores, 1 on disk).")
    ] = None,
) -> None:
    """Backup and disaster recovery for vector indexes."""
    if endpoint_url is not None:
        _check_endpoint(endpoint_url)
    given = {"endpoint_url": endpoint_url, "region": region, "sse": sse, "sse_kms_key_id": sse_kms_key_id,
             "concurrency": concurrency}
    for name, value in given.items():
        if value is not None:
            for variable in STORAGE_ENV[name]:
                os.environ[variable] = str(value)

def _check_endpoint(url: str) -> None:
    """An endpoint is an http(s) URL with a host; anything else fails later inside botocore."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--endpoint-url must be an http:// or https:// URL with a host, like http://127.0.0.1:9000")


Repo = Annotated[str, typer.Argument(help=f"Repository path or URL (or set {REPO_ENV}).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
Collection = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection (needed when the repository holds several).")
]
SnapshotRef = Annotated[str, typer.Argument(help="Snapshot id, id prefix, tag, or 'latest'.")]


def command(name: str) -> Any:
    return app.command(name, cls=RepoCommand)


@command("init")
def init_cmd(
    repo: Repo,
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help="Encrypt every object (key: VECDR_PASSWORD, VECDR_KEY or a prompt).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Create an empty repository."""
    r = vecdr.init(repo, encrypt=encrypt)
    doc = {"repository": r.url, "id": r.config.id, "format": r.config.format,
           "capabilities": r.config.capabilities, "encrypted": r.config.encryption is not None}
    if as_json:
        output.emit_json(doc)
    else:
        print(f"created {'encrypted ' if encrypt else ''}vecdr repository {r.config.id[:12]} at {output.shown(r.url)}")
        if not r.config.capabilities.get("atomic_create"):
            output.warn("this store has no atomic create-if-absent: run one writer at a time")


@command("snapshot")
def snapshot_cmd(
    repo: Repo,
    source: Annotated[str, typer.Argument(help="What to back up: faiss:PATH, parquet:PATH, …")],
    collection: Collection = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the snapshot (repeatable).")] = None,
    with_index: Annotated[
        bool, typer.Option("--with-index", help="Also keep the native index for the fastest restore.")
    ] = False,
    embeddings: Annotated[
        str | None, typer.Option("--embeddings", help="Original vectors for a lossy FAISS index (.npy or Parquet).")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="auto, full, diff or tracked.")] = "auto",
    allow_nonfinite: Annotated[
        bool, typer.Option("--allow-nonfinite", help="Store NaN/Inf vectors instead of refusing.")
    ] = False,
    quality_sample: Annotated[
        int | None,
        typer.Option("--quality-sample", min=0, max=QUALITY_MAX,
                     help="Queries (with the live index's answers) kept for drills; default 32 for a new collection, "
                          f"at most {QUALITY_MAX:,} and the source's rows."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Take a snapshot: full the first time, incremental after."""
    result = vecdr.snapshot(
        repo, source, collection=collection, tags=tag or (), with_index=with_index,
        embeddings=embeddings, mode=mode, allow_nonfinite=allow_nonfinite, quality_sample=quality_sample,
        reporter=output.reporter(as_json),
    )
    if as_json:
        output.emit_json(result.to_dict())
        return
    print(
        f"snapshot {result.snapshot[:12]} of {result.collection!r} ({result.mode}): "
        f"{result.rows:,} rows, +{result.added:,} added, ~{result.changed:,} changed, "
        f"-{result.deleted:,} deleted, {output.human_bytes(result.bytes_written)} written "
        f"in {result.seconds:.2f}s"
    )


@command("snapshots")
def snapshots_cmd(repo: Repo, collection: Collection = None, as_json: Json = False) -> None:
    """List snapshots, oldest first."""
    rows = vecdr.snapshots(repo, collection)
    if as_json:
        output.emit_json({"snapshots": rows})
        return
    if not rows:
        print("no snapshots")
        return
    from rich.table import Table

    table = Table("id", "collection", "created (UTC)", "rows", "tags", box=None)
    for s in rows:
        table.add_row(output.cell(s["id"][:12]), output.cell(s["collection"]),
                      output.cell(s["created_at"][:19].replace("T", " ")), f"{s['rows']:,}",
                      output.cell(",".join(s["tags"])))
    output.stdout.print(table)


@command("show")
def show_cmd(repo: Repo, snapshot: SnapshotRef, collection: Collection = None, as_json: Json = False) -> None:
    """Show one snapshot's manifest."""
    m = vecdr.engines.open_snapshot(vecdr.open_repository(repo), snapshot, collection,
                                    reporter=output.reporter(True))
    doc = {
        "id": m.snapshot, "collection": m.collection, "created_at": m.created_at,
        "parent": m.parent, "tags": list(m.tags), "rows": m.rows, "dimension": m.dimension,
        "id_type": m.id_type, "attributes": [{"name": f.name, "type": str(f.type)} for f in m.attributes],
        "index": m.index, "segments": len(m.segments),
        "segment_bytes": sum(s.object.size for s in m.segments),
        "artifacts": {k: v.size for k, v in m.artifacts.items()},
        "source": m.source, "stats": m.stats, "software": m.software,
    }
    if as_json:
        output.emit_json(doc)
        return
    for key, value in doc.items():
        print(f"{key:>14}: {output.shown(value)}")


@command("restore")
def restore_cmd(
    repo: Repo,
    snapshot: SnapshotRef,
    target: Annotated[str, typer.Argument(help="Where to rebuild: faiss:PATH, parquet:PATH, …")],
    collection: Collection = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Newest snapshot at or before this ISO time.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing target.")] = False,
    index_factory: Annotated[
        str | None, typer.Option("--index-factory", help="Build this FAISS index instead of the recorded one.")
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", metavar="MODE",
                     help="FAISS rebuild on a GPU: auto (the default), on, off or require."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Rebuild an index from a snapshot."""
    options = {"factory": index_factory} if index_factory else {}
    if gpu is not None:
        options["gpu"] = gpu
    result = vecdr.restore(
        repo, target, snapshot, collection=collection, as_of=as_of, force=force,
        reporter=output.reporter(as_json), **options,
    )
    if as_json:
        output.emit_json(result.to_dict())
        return
    how = "native index" if result.native else "rebuilt from embeddings"
    print(
        f"restored snapshot {result.snapshot[:12]} of {result.collection!r} into {output.shown(result.target)}: "
        f"{result.rows:,} rows, {how}, {result.seconds:.2f}s (snapshot age {result.snapshot_age_seconds:.0f}s)"
    )


@command("verify")
def verify_cmd(
    repo: Repo,
    read_data: Annotated[bool, typer.Option("--read-data", help="Read and hash every object.")] = False,
    as_json: Json = False,
) -> None:
    """Check every snapshot's objects (presence and size; every byte with --read-data)."""
    report = vecdr.verify(repo, read_data=read_data, reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(report.to_dict())
    else:
        for p in report.errors:
            print(f"ERROR {output.one_line(p.problem)}")
        extra = f", {len(report.unreferenced)} unreferenced object(s)" if report.unreferenced else ""
        if report.temporaries:
            extra += f", {len(report.temporaries)} temporary file(s) of unfinished writes (`vecdr prune` removes them)"
        state = "ok" if report.ok else f"{len(report.errors)} error(s)"
        print(f"{report.snapshots} snapshot(s), {report.objects} object(s) checked: {state}{extra}")
    if not report.ok:
        raise typer.Exit(1)


@command("export")
def export_cmd(
    repo: Repo,
    snapshot: SnapshotRef,
    out: Annotated[str, typer.Argument(help="OUT.parquet, or OUT.npy (ids beside it in OUT.ids.npy).")],
    collection: Collection = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
    as_json: Json = False,
) -> None:
    """Export a snapshot's rows to Parquet or .npy."""
    doc = vecdr.export(repo, snapshot, out, collection=collection, force=force,
                       reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(doc)
    else:
        print(f"exported {doc['rows']:,} rows of snapshot {str(doc['snapshot'])[:12]} to {output.shown(doc['path'])}")


@command("forget")
def forget_cmd(
    repo: Repo,
    snapshots: Annotated[list[str] | None, typer.Argument(help="Snapshots to forget (else a --keep-* policy).")] = None,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Keep the newest N.")] = 0,
    keep_hourly: Annotated[int, typer.Option("--keep-hourly", min=0, help="Keep the newest of each of N hours.")] = 0,
    keep_daily: Annotated[int, typer.Option("--keep-daily", min=0, help="Keep the newest of each of N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", min=0, help="Keep the newest of each of N weeks.")] = 0,
    keep_monthly: Annotated[
        int, typer.Option("--keep-monthly", min=0, help="Keep the newest of each of N months.")
    ] = 0,
    keep_yearly: Annotated[int, typer.Option("--keep-yearly", min=0, help="Keep the newest of each of N years.")] = 0,
    keep_within: Annotated[
        str | None, typer.Option("--keep-within", help="Keep all within this of the newest (e.g. 7d, 1y6m, 12h).")
    ] = None,
    keep_tag: Annotated[
        list[str] | None, typer.Option("--keep-tag", help="Keep all with this tag (repeatable).")
    ] = None,
    collection: Collection = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be forgotten; change nothing.")
    ] = False,
    then_prune: Annotated[bool, typer.Option("--prune", help="Prune after forgetting.")] = False,
    as_json: Json = False,
) -> None:
    """Forget snapshots by id or by a retention policy (their data goes with `prune`)."""
    result = vecdr.forget(
        repo, tuple(snapshots or ()), keep_last=keep_last, keep_hourly=keep_hourly, keep_daily=keep_daily,
        keep_weekly=keep_weekly, keep_monthly=keep_monthly, keep_yearly=keep_yearly, keep_within=keep_within,
        keep_tags=tuple(keep_tag or ()), collection=collection, dry_run=dry_run, reporter=output.reporter(as_json),
    )
    pruned = vecdr.prune(repo, dry_run=dry_run, reporter=output.reporter(as_json)) if then_prune else None
    if as_json:
        output.emit_json({**result.to_dict(), **({"prune": pruned.to_dict()} if pruned else {})})
        return
    verb = "would forget" if dry_run else "forgot"
    for d in result.decisions:
        why = ", ".join(d.reasons)
        state = f"keep ({why})" if d.keep else verb
        print(output.shown(f"{d.commit.snapshot[:12]}  {d.commit.collection}  {d.commit.created_at}  {state}"))
    print(f"{verb} {len(result.removed)} of {len(result.decisions)} snapshot(s)")
    if pruned is not None:
        _print_prune(pruned)


def _print_prune(result: Any) -> None:
    verb = "would delete" if result.dry_run else "deleted"
    young = f"; kept {len(result.kept_young)} unreferenced within the grace period" if result.kept_young else ""
    print(f"{verb} {len(result.deleted)} object(s), {output.human_bytes(result.deleted_bytes)}, "
          f"used by no snapshot (of {result.snapshots}){young}")


@command("prune")
def prune_cmd(
    repo: Repo,
    grace: Annotated[
        str, typer.Option("--grace", help="Delete only objects unused for longer than this (e.g. 24h, 7d, 0h).")
    ] = "24h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be deleted; delete nothing.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Delete the objects no snapshot uses (after `forget`), once older than the grace period."""
    result = vecdr.prune(repo, grace=grace, dry_run=dry_run, reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(result.to_dict())
    else:
        _print_prune(result)


@command("compact")
def compact_cmd(
    repo: Repo,
    snapshot: Annotated[str, typer.Argument(help="The collection's latest snapshot (default).")] = "latest",
    collection: Collection = None,
    as_json: Json = False,
) -> None:
    """Rewrite the latest snapshot as a new one without dead rows or small segments."""
    result = vecdr.compact(repo, snapshot, collection=collection, reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(result.to_dict())
        return
    print(f"snapshot {result.snapshot[:12]} of {result.collection!r} compacts {result.compacted[:12]}: "
          f"{result.rows:,} rows, {result.segments_before} -> {result.segments_after} segments "
          f"({result.segments_rewritten} rewritten, {result.dead_rows_dropped:,} dead rows dropped), "
          f"{output.human_bytes(result.bytes_written)} written in {result.seconds:.2f}s")


@command("repair")
def repair_cmd(
    repo: Repo,
    source: Annotated[
        str | None, typer.Option("--source", help="Rebuild damaged segments from this source (faiss:PATH, …).")
    ] = None,
    embeddings: Annotated[
        str | None, typer.Option("--embeddings", help="Original vectors for a lossy FAISS index (.npy or Parquet).")
    ] = None,
    collection: Collection = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be repaired; change nothing.")
    ] = False,
    forget_unrepairable: Annotated[
        bool, typer.Option("--forget-unrepairable", help="Forget the snapshots that stay damaged.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Mend damaged or missing objects of live snapshots (segments from --source)."""
    result = vecdr.repair(repo, source, embeddings=embeddings, collection=collection, dry_run=dry_run,
                          forget_unrepairable=forget_unrepairable, reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(result.to_dict())
    else:
        would = "would be " if dry_run else ""
        for d in result.damaged:
            outcome = f"{would}repaired: {d.how}" if d.repaired else f"not repaired: {d.how}"
            problem = d.problem if d.object in d.problem else f"{d.object}: {d.problem}"
            print(output.one_line(f"{problem}; {outcome}"))
        for snapshot in result.unrepairable:
            state = ("would be forgotten" if dry_run else "forgotten") if snapshot in result.forgotten else "kept"
            print(output.one_line(f"damaged snapshot {snapshot}: {state}"))
        mended = sum(d.repaired for d in result.damaged)
        print(f"{result.snapshots} snapshot(s), {result.objects} object(s) checked: {len(result.damaged)} damaged, "
              f"{mended} {would}repaired, {len(result.unrepairable)} snapshot(s) left damaged")
    if not result.ok:
        raise typer.Exit(1)


PolicyFile = Annotated[str | None, typer.Option("--policy", help="Recovery objectives (TOML, see docs/drills.md).")]


def _objectives(rto: str | None, rpo: str | None, min_recall: float | None) -> Any:
    from vecdr.policy import Objectives, parse_seconds

    if rto is None and rpo is None and min_recall is None:
        return None
    return Objectives(parse_seconds(rto, "--rto") if rto else None, parse_seconds(rpo, "--rpo") if rpo else None,
                      min_recall)


@command("drill")
def drill_cmd(
    repo: Repo,
    snapshot: Annotated[str, typer.Argument(help="Snapshot to drill (default: latest).")] = "latest",
    collection: Collection = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Restore here instead of a scratch place of the production engine.")
    ] = None,
    policy: PolicyFile = None,
    rto: Annotated[str | None, typer.Option("--rto", help="RTO target (e.g. 60s, 5m); overrides the policy.")] = None,
    rpo: Annotated[str | None, typer.Option("--rpo", help="RPO target (e.g. 0s, 1h); overrides the policy.")] = None,
    min_recall: Annotated[
        float | None, typer.Option("--min-recall", min=0, max=1, help="Quality floor: restored/live recall.")
    ] = None,
    report: Annotated[str | None, typer.Option("--report", help="Also write a Markdown report here.")] = None,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Keep no record of the drill in the repository (read-only credentials).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Restore a snapshot into a scratch target, measure RTO, RPO, rows and recall, clean up."""
    from vecdr.policy import load_policy

    if report:
        output.check_writable(report, "--report")  # before the drill, not after it ran
    repository = vecdr.open_repository(repo)  # once: an encrypted one may ask for its passphrase
    if report:
        vecdr._outside(repository, report, "--report")
    loaded = load_policy(policy) if policy else None
    objectives = _objectives(rto, rpo, min_recall)
    if loaded is not None:
        base = loaded.objectives(collection or vecdr._drill_collection(repository, snapshot))
        objectives = base.overridden_by(objectives)
    result = vecdr.drill(repository, snapshot, collection=collection, target=target, objectives=objectives,
                         record=not no_record, reporter=output.reporter(as_json))
    if report:
        output.write_text(report, output.drill_markdown(result))
    if as_json:
        output.emit_json(result.to_dict())
    else:
        output.print_drill(result)
    if not result.passed:
        raise typer.Exit(1)


@command("drills")
def drills_cmd(repo: Repo, collection: Collection = None, as_json: Json = False) -> None:
    """List past drills with their measured RTO, RPO and recall."""
    history = vecdr.drills(repo, collection)
    if as_json:
        output.emit_json(history)
        return
    output.print_drills(history)


@command("status")
def status_cmd(
    repo: Repo,
    policy: PolicyFile = None,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Also write a node-exporter textfile here.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Each collection's newest snapshot age, pending changes and last drill against its objectives."""
    from vecdr.engines.status import write_prometheus

    if prometheus:
        output.check_writable(prometheus, "--prometheus")
    repository = vecdr.open_repository(repo)  # once: an encrypted one may ask for its passphrase
    if prometheus:
        vecdr._outside(repository, prometheus, "--prometheus")
    rows = vecdr.status(repository, policy, reporter=output.reporter(as_json))
    if prometheus:
        write_prometheus(rows, prometheus)
    if as_json:
        output.emit_json([r.to_dict() for r in rows])
    else:
        output.print_status(rows)
    if any(r.rpo_met is False for r in rows):
        raise typer.Exit(1)


@app.command("recover")
def recover_cmd(
    repo: Annotated[str | None, typer.Argument(help="Repository (default: the policy's, or VECDR_REPOSITORY).")] = None,
    policy: Annotated[str, typer.Option("--policy", help="Recovery objectives and targets (TOML).")] = "vecdr.toml",
    force: Annotated[bool, typer.Option("--force", help="Replace targets that exist.")] = False,
    as_json: Json = False,
) -> None:
    """Restore every collection of the policy into its target, most critical first."""
    result = vecdr.recover(repo or os.environ.get(REPO_ENV), policy, force=force, reporter=output.reporter(as_json))
    if as_json:
        output.emit_json(result.to_dict())
    else:
        output.print_recovery(result)
    if not result.passed:
        raise typer.Exit(1)


@command("unlock")
def unlock_cmd(
    repo: Repo,
    all_locks: Annotated[
        bool, typer.Option("--all", help="Also remove locks that still look held (their holder must be gone).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Remove stale locks (left by a process that died); list what was removed."""
    from vecdr.repository.locks import list_locks, unlock

    r = vecdr.open_repository(repo)
    removed = unlock(r.store, all_locks)
    left = list_locks(r.store)
    if as_json:
        output.emit_json({"removed": [_lock_doc(lock) for lock in removed], "held": [_lock_doc(lock) for lock in left]})
        return
    for lock in removed:
        print(f"removed {output.shown(lock.describe())}")
    for lock in left:
        print(f"kept {output.shown(lock.describe())} (remove it with --all if its holder is gone)")
    if not removed and not left:
        print("no locks")


def _lock_doc(lock: Any) -> dict[str, Any]:
    return {"kind": lock.kind, "holder": lock.holder, "purpose": lock.purpose, "created": lock.created,
            "expires": lock.expires, "stale": lock.stale()}


class _WarnHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        output.warn(record.getMessage())


def _ask_passphrase(question: str, confirm: bool) -> str:
    """An encrypted repository's passphrase, typed on the terminal (twice for a new one)."""
    import getpass

    first = getpass.getpass(question)
    if confirm and getpass.getpass("the same passphrase again: ") != first:
        raise UsageError("the two passphrases differ")
    return first


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised in the main thread so that every ``finally`` and
    abort path runs (locks released, temporaries and staging objects removed).

    A KeyboardInterrupt, so that no ``except Exception`` swallows it and libraries treat
    SIGTERM as they treat Ctrl-C (psycopg cancels the query running on the server).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: The signals received during this run (the argument parser turns a KeyboardInterrupt
#: into a bare exit status 130, so the number is kept here).
_received: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    # Once: a second signal while cleaning up gets the default action (SIGTERM ends the
    # process, SIGINT raises KeyboardInterrupt again).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _received.append(signum)
    raise Interrupted(signum)


def _install_interrupts() -> dict[int, Any]:
    """SIGTERM handled like SIGINT; returns the handlers to put back (none off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: every failure becomes one line on stderr."""
    # Warnings (from vecdr or a library) become one line each on stderr.
    showwarning = warnings.showwarning
    warnings.showwarning = lambda message, *args, **kwargs: output.warn(str(message))
    # Retries of a remote store are logged; the CLI shows them with VECDR_DEBUG=1 only,
    # so a failure still ends in exactly one line.
    logger = logging.getLogger("vecdr")
    handler = _WarnHandler() if os.environ.get("VECDR_DEBUG") else logging.NullHandler()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    keys.passphrase_prompt = _ask_passphrase if sys.stdin.isatty() else None
    _received.clear()
    handlers = _install_interrupts()
    try:
        return _run(argv)
    finally:
        # main() is also called in-process (tests, embedding); leave logging and signals as found.
        for signum, previous in handlers.items():
            signal.signal(signum, previous)
        warnings.showwarning = showwarning
        logger.removeHandler(handler)
        logger.propagate = propagate


def _run(argv: list[str] | None) -> int:
    try:
        # Without standalone mode the parser returns an Exit's code instead of raising it.
        code = app(args=argv, standalone_mode=False, prog_name="vecdr")
        if _received:  # the parser caught the Interrupted after every cleanup had run
            output.error("interrupted")
            return 128 + _received[0]  # 130 (SIGINT) or 143 (SIGTERM), as a shell reports a signal
        return code if isinstance(code, int) else 0
    except UsageError as exc:
        output.error(str(exc))
        return 2
    except VecdrError as exc:
        output.error(str(exc))
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Interrupted as exc:
        output.error("interrupted")
        return 128 + exc.signum
    except (KeyboardInterrupt, typer.Abort):
        output.error("interrupted")
        return 130
    except OSError as exc:
        # A full disk, a read-only mount, a denied permission outside the store and the
        # targets (which type these themselves): the user's to fix, not a bug.
        if exc.errno not in FULL | DENIED:
            return _unexpected(exc)
        output.error(f"{exc.filename}: {cause(exc)}" if exc.filename else cause(exc))
        return 1
    except Exception as exc:
        if hasattr(exc, "format_message"):  # a usage error from the argument parser
            message = exc.format_message()
            if not message:  # no arguments at all: the help was shown
                return 0
            output.error(message)
            return int(getattr(exc, "exit_code", 2))
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    if os.environ.get("VECDR_DEBUG"):
        raise exc
    output.error(f"unexpected {type(exc).__name__}: {exc} (set VECDR_DEBUG=1 for a traceback)")
    return 70


def entry() -> None:
    """The console script: run, flush, and leave without interpreter teardown.

    Everything vecdr writes is fsync'd and closed before a command returns. Skipping
    finalization avoids a known race in Arrow's native thread pools at interpreter
    exit, which can abort (SIGABRT) a process whose work had already succeeded.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
