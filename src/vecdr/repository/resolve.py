"""Turning what a user typed (id, prefix, tag, ``latest``, a time) into one commit."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from vecdr.errors import AmbiguousSnapshotError, CollectionError, SnapshotNotFoundError, UsageError
from vecdr.format.records import CommitRecord

MIN_PREFIX = 4
#: Words a snapshot reference means by itself; never a tag.
RESERVED = ("latest",)


def check_ref(ref: object) -> str:
    """``ref`` as given, if it can name a snapshot: a non-blank string.

    ``None`` means ``latest`` to the API; an empty or blank string never does, so a
    ``vecdr forget REPO ""`` from a script whose variable came out empty names nothing.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(f"a snapshot reference must be a non-empty id, id prefix, tag or 'latest', not {ref!r}")
    return ref


#: What a snapshot id or an id prefix looks like (ids are lowercase hex; prefixes match case-blind).
_ID_FORM = re.compile(rf"[0-9a-fA-F]{{{MIN_PREFIX},}}")


def check_tag(tag: str) -> str:
    """``tag``, if it can never be read as something else: not ``latest``, not an id or id prefix.

    A reference is tried as an id, a tag, then an id prefix; a tag ``latest`` or ``cafe1234``
    would hide the newest snapshot or another snapshot's id from ``show``, ``restore`` and ``forget``.
    """
    if tag.strip().lower() in RESERVED:
        raise UsageError(f"{tag!r} is a reserved word and cannot be a tag")
    if _ID_FORM.fullmatch(tag.strip()):
        raise UsageError(
            f"tag {tag!r} looks like a snapshot id (hex digits) and would hide ids starting with it; "
            f"choose another (e.g. 'v{tag}')"
        )
    return tag


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
    """Find one snapshot by id, unique id prefix, tag, ``latest`` or ``as_of`` time (``ref=None``: latest)."""
    ref = "latest" if ref is None else check_ref(ref)
    if as_of is not None:
        if ref != "latest":
            raise UsageError(f"give either a snapshot ({ref!r}) or a time to restore as of, not both")
        name = pick_collection(commits, collection)
        when = parse_time(as_of) if isinstance(as_of, str) else as_of
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        older = [c for c in commits if c.collection == name and parse_time(c.created_at) <= when]
        if not older:
            raise SnapshotNotFoundError(f"no snapshot of {name!r} at or before {when.isoformat()}")
        return older[-1]
    if ref == "latest":
        name = pick_collection(commits, collection)
        return [c for c in commits if c.collection == name][-1]
    scope = [c for c in commits if collection is None or c.collection == collection]
    exact = [c for c in scope if c.snapshot == ref]
    if exact:
        return exact[0]
    tagged = [c for c in scope if ref in c.tags]
    matches = [c for c in scope if c.snapshot.startswith(ref.lower())] if len(ref) >= MIN_PREFIX else []
    if tagged:
        if len({c.collection for c in tagged}) > 1:
            raise AmbiguousSnapshotError(
                f"tag {ref!r} is used in several collections; name one with --collection"
            )
        if any(c.seq != tagged[-1].seq for c in matches):
            # A tag that looks like an id (older vecdr accepted them, or a crafted record).
            raise AmbiguousSnapshotError(f"{ref!r} is both a tag and the start of a snapshot id; give the full id")
        return tagged[-1]
    if matches:
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(c.snapshot[:12] for c in matches[:5])
            raise AmbiguousSnapshotError(f"snapshot prefix {ref!r} matches {len(matches)}: {shown}")
    raise SnapshotNotFoundError(f"no snapshot matches {ref!r}")
