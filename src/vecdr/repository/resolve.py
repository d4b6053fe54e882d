"""Turning what a user typed (id, prefix, tag, ``latest``, a time) into one commit."""

from __future__ import annotations

from datetime import UTC, datetime

from vecdr.errors import AmbiguousSnapshotError, CollectionError, SnapshotNotFoundError, UsageError
from vecdr.format.records import CommitRecord

MIN_PREFIX = 4


def collections(commits: list[CommitRecord]) -> list[str]:
    return sorted({c.collection for c in commits})


def pick_collection(commits: list[CommitRecord], collection: str | None) -> str:
    """The collection meant: the one named, or the only one the repository holds."""
    names = collections(commits)
    if collection is not None:
        if collection not in names:
            known = ", ".join(names) or "none"
            raise CollectionError(f"no collection {collection!r} in this repository (known: {known})")
        return collection
    if not names:
        raise SnapshotNotFoundError("the repository holds no snapshots yet")
    if len(names) > 1:
        raise CollectionError(
            f"the repository holds {len(names)} collections ({', '.join(names)}); "
            "name one with --collection"
        )
    return names[0]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; naive times are taken as UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SnapshotNotFoundError(f"{text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def resolve(
    commits: list[CommitRecord],
    ref: str | None = "latest",
    collection: str | None = None,
    as_of: str | datetime | None = None,
) -> CommitRecord:
    """Find one snapshot by id, unique id prefix, tag, ``latest`` or ``as_of`` time."""
    if as_of is not None:
        if ref not in (None, "latest"):
            raise UsageError(f"give either a snapshot ({ref!r}) or a time to restore as of, not both")
        name = pick_collection(commits, collection)
        when = parse_time(as_of) if isinstance(as_of, str) else as_of
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        older = [c for c in commits if c.collection == name and parse_time(c.created_at) <= when]
        if not older:
            raise SnapshotNotFoundError(f"no snapshot of {name!r} at or before {when.isoformat()}")
        return older[-1]
    ref = ref or "latest"
    if ref == "latest":
        name = pick_collection(commits, collection)
        return [c for c in commits if c.collection == name][-1]
    scope = [c for c in commits if collection is None or c.collection == collection]
    exact = [c for c in scope if c.snapshot == ref]
    if exact:
        return exact[0]
    tagged = [c for c in scope if ref in c.tags]
    if tagged:
        if len({c.collection for c in tagged}) > 1:
            raise AmbiguousSnapshotError(
                f"tag {ref!r} is used in several collections; name one with --collection"
            )
        return tagged[-1]
    if len(ref) >= MIN_PREFIX:
        matches = [c for c in scope if c.snapshot.startswith(ref.lower())]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(c.snapshot[:12] for c in matches[:5])
            raise AmbiguousSnapshotError(f"snapshot prefix {ref!r} matches {len(matches)}: {shown}")
    raise SnapshotNotFoundError(f"no snapshot matches {ref!r}")
