"""Forgetting snapshots by a retention policy, restic's way.

Policies apply to each collection on its own, newest snapshot first:

- ``last``: the newest N snapshots;
- ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly``: for each of the N
  newest periods (UTC hours, days, ISO weeks, months, years) that hold a
  snapshot, the newest snapshot in it;
- ``within``: every snapshot taken within that long before the collection's newest;
- ``tags``: every snapshot carrying one of these tags.

A snapshot any rule keeps is kept; the rest are forgotten. Forgetting deletes the
snapshot's commit record, under the repository's exclusive lock; its objects stay
until :func:`vecdr.engines.prune.prune` finds no live snapshot uses them. Every
manifest is self-contained, so no kept snapshot depends on a forgotten one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vecdr.errors import SnapshotNotFoundError, UsageError
from vecdr.format.records import CommitRecord
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, resolve
from vecdr.repository.commits import skipped
from vecdr.repository.locks import Lock
from vecdr.repository.resolve import parse_time

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$")

#: period name -> the key two snapshots in the same period share
PERIODS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def parse_duration(text: str) -> timedelta:
    """restic's durations: ``2d``, ``1y6m``, ``3d12h``; a month is 30 days, a year 365."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise UsageError(f"{text!r} is not a duration like 7d, 12h, 1y6m or 3d12h")
    years, months, days, hours = (int(g or 0) for g in match.groups())
    try:
        return timedelta(days=365 * years + 30 * months + days, hours=hours)
    except OverflowError:
        raise UsageError(f"{text!r} is longer than any duration vecdr can count (about 2.7 million years)") from None


@dataclass(frozen=True, slots=True)
class Retention:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("last", *PERIODS):
            if getattr(self, name) < 0:
                raise UsageError(f"--keep-{name} must not be negative")

    @property
    def empty(self) -> bool:
        return not (self.last or any(getattr(self, p) for p in PERIODS) or self.within or self.tags)


@dataclass(frozen=True, slots=True)
class Decision:
    commit: CommitRecord
    keep: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        c = self.commit
        return {"id": c.snapshot, "seq": c.seq, "collection": c.collection, "created_at": c.created_at,
                "tags": list(c.tags), "keep": self.keep, "reasons": list(self.reasons)}


@dataclass(slots=True)
class ForgetResult:
    decisions: list[Decision] = field(default_factory=list)
    dry_run: bool = False

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def to_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "kept": [d.to_dict() for d in self.kept],
                "removed": [d.to_dict() for d in self.removed]}


def decide(commits: list[CommitRecord], policy: Retention) -> list[Decision]:
    """Which snapshots ``policy`` keeps, and why, per collection (oldest first, like ``commits``)."""
    reasons: dict[int, list[str]] = {c.seq: [] for c in commits}
    for name in sorted({c.collection for c in commits}):
        newest_first = sorted((c for c in commits if c.collection == name), key=lambda c: c.seq, reverse=True)
        times = {c.seq: parse_time(c.created_at) for c in newest_first}
        for c in newest_first[: policy.last]:
            reasons[c.seq].append("last")
        for period, key in PERIODS.items():
            wanted = getattr(policy, period)
            seen: set[tuple[int, ...]] = set()
            for c in newest_first:
                if len(seen) >= wanted:
                    break
                bucket = key(times[c.seq])
                if bucket not in seen:
                    seen.add(bucket)
                    reasons[c.seq].append(period)
        if policy.within is not None and newest_first:
            try:
                horizon: datetime = max(times.values()) - policy.within
            except OverflowError:  # reaches before year 1: every snapshot is within it
                horizon = datetime.min.replace(tzinfo=UTC)
            for c in newest_first:
                if times[c.seq] >= horizon:
                    reasons[c.seq].append("within")
        for c in newest_first:
            reasons[c.seq].extend(f"tag {t}" for t in c.tags if t in policy.tags)
    return [Decision(c, bool(reasons[c.seq]), tuple(reasons[c.seq])) for c in commits]


def forget(
    repo: Repository,
    policy: Retention | None = None,
    snapshots: list[str] | tuple[str, ...] = (),
    collection: str | None = None,
    dry_run: bool = False,
    reporter: Reporter = NULL,
) -> ForgetResult:
    """Forget the snapshots named in ``snapshots``, or those ``policy`` does not keep.

    ``collection`` limits the policy to one collection. With ``dry_run`` nothing
    changes; the result says what would be kept and removed.
    """
    policy = policy or Retention()
    if policy.empty == (not snapshots):
        raise UsageError("give either snapshots to forget or a --keep-* policy (one of them, not both)")
    with Lock(repo.store, "exclusive", "forget"):
        commits = repo.commits(lambda exc: reporter.warn(skipped(exc)))
        if collection is not None:
            commits = [c for c in commits if c.collection == collection]
            if not commits:
                raise SnapshotNotFoundError(f"no snapshots of collection {collection!r}")
        unknown = sorted({t for t in policy.tags if not any(t in c.tags for c in commits)})
        if unknown:
            # A misspelt --keep-tag would keep nothing and forget what it was meant to keep.
            raise UsageError(f"--keep-tag {', '.join(map(repr, unknown))}: no snapshot"
                             f"{' of ' + repr(collection) if collection else ''} carries this tag; nothing forgotten")
        if snapshots:
            named = {resolve(commits, ref, collection).seq for ref in snapshots}
            decisions = [Decision(c, c.seq not in named, () if c.seq in named else ("not named",))
                         for c in commits]
        else:
            decisions = decide(commits, policy)
        result = ForgetResult(decisions, dry_run)
        if not dry_run:
            reporter.start("forget", len(result.removed), unit="snapshots")
            for d in result.removed:
                repo.store.delete(d.commit.key)
                reporter.advance(1)
            reporter.finish()
    return result
