"""Recovery objectives as configuration: a TOML policy file with a target per collection.

::

    repository = "s3://backups/vectors"

    [collections.products]
    source = "postgresql://app@db/shop?table=products"     # for `vecdr status` (pending changes)
    target = "postgresql://app@dr-db/shop?table=products"  # for `vecdr recover`
    tier = "mission-critical"

    [collections.archive]
    tier = "archival"
    rto = "2h"          # explicit values override the tier's
    min_recall = 0.9
    priority = 9

Each collection's targets come from its tier, then its own values. Durations are a
number of seconds or a number with ``s``, ``m`` (minutes), ``h`` or ``d``.
``min_recall`` is the quality floor: the restored index's recall@10 over the
snapshot's stored queries, as a share of the live index's own recall.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vecdr.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_seconds(value: str | int | float, what: str = "duration") -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"1.5h"``, ``"1d"`` -> seconds."""
    if isinstance(value, bool):
        raise UsageError(f"{what}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise UsageError(f"{what}: {value!r} is not a duration like 45s, 5m, 2h or 1d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise UsageError(f"{what} must not be negative")
    return seconds


@dataclass(frozen=True, slots=True)
class Objectives:
    """What a collection must achieve: restore within ``rto``, lose at most ``rpo``, and keep quality."""

    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    min_recall: float | None = None  # restored recall / live recall, 0..1

    def __post_init__(self) -> None:
        if self.min_recall is not None and not 0 <= self.min_recall <= 1:
            raise UsageError(f"min_recall is a share between 0 and 1, not {self.min_recall}")

    def overridden_by(self, other: Objectives | None) -> Objectives:
        """These objectives, with every value ``other`` sets instead."""
        if other is None:
            return self
        return replace(self, **{name: getattr(other, name) for name in ("rto_seconds", "rpo_seconds", "min_recall")
                                if getattr(other, name) is not None})


#: The four tiers users know, with their priority (lower is restored first).
TIERS: dict[str, tuple[Objectives, int]] = {
    "mission-critical": (Objectives(60, 0, 0.98), 1),
    "business-critical": (Objectives(300, 60, 0.95), 2),
    "operational": (Objectives(1800, 300, 0.95), 3),
    "archival": (Objectives(86400, 3600, 0.9), 4),
}


@dataclass(frozen=True, slots=True)
class CollectionPolicy:
    name: str
    tier: str | None
    objectives: Objectives
    priority: int
    source: str | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    repository: str | None
    collections: dict[str, CollectionPolicy] = field(default_factory=dict)
    path: str | None = None

    def ordered(self) -> list[CollectionPolicy]:
        """Collections in restore order: priority, then name."""
        return sorted(self.collections.values(), key=lambda c: (c.priority, c.name))

    def objectives(self, collection: str) -> Objectives:
        found = self.collections.get(collection)
        return found.objectives if found else Objectives()


KNOWN_KEYS = {"source", "target", "tier", "rto", "rpo", "min_recall", "priority"}


def _collection(name: str, doc: dict[str, Any], where: str) -> CollectionPolicy:
    unknown = sorted(set(doc) - KNOWN_KEYS)
    if unknown:
        raise UsageError(f"{where}: collection {name!r} has unknown keys {unknown} (known: {sorted(KNOWN_KEYS)})")
    tier = doc.get("tier")
    if tier is not None and tier not in TIERS:
        raise UsageError(f"{where}: collection {name!r} has tier {tier!r}; tiers are {', '.join(TIERS)}")
    base, priority = TIERS[tier] if tier else (Objectives(), 5)
    objectives = replace(
        base,
        rto_seconds=parse_seconds(doc["rto"], f"{name}.rto") if "rto" in doc else base.rto_seconds,
        rpo_seconds=parse_seconds(doc["rpo"], f"{name}.rpo") if "rpo" in doc else base.rpo_seconds,
        min_recall=float(doc["min_recall"]) if "min_recall" in doc else base.min_recall,
    )
    if "priority" in doc and (not isinstance(doc["priority"], int) or isinstance(doc["priority"], bool)):
        raise UsageError(f"{where}: {name}.priority must be a whole number")
    return CollectionPolicy(name, tier, objectives, int(doc.get("priority", priority)),
                            doc.get("source"), doc.get("target"))


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file; every problem is a one-line :class:`UsageError`."""
    where = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no policy file at {where}") from None
    except OSError as exc:  # a folder, no permission
        raise UsageError(f"cannot read the policy file {where}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} is not valid TOML: {exc}") from exc
    collections = doc.get("collections", {})
    if not isinstance(collections, dict) or not all(isinstance(v, dict) for v in collections.values()):
        raise UsageError(f"{where}: [collections.NAME] tables are expected")
    repository = doc.get("repository")
    if repository is not None and not isinstance(repository, str):
        raise UsageError(f"{where}: repository must be a path or URL")
    return Policy(repository, {n: _collection(n, c, where) for n, c in collections.items()}, where)
