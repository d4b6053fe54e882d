"""The drill history: one JSON record per drill under ``drills/``, kept with the backups.

Records are named ``drills/<UTC time>-<id>.json`` so they list in time order, and
written with create-if-absent: a record is never overwritten. They are small,
readable, and not part of any snapshot (prune leaves them alone).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from vecdr.store import Store

PREFIX = "drills"


def record_drill(store: Store, doc: dict[str, Any]) -> str:
    """Append one drill's result; returns its key."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{PREFIX}/{stamp}-{uuid.uuid4().hex[:8]}.json"
    store.create(key, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode())
    return key


def drill_history(store: Store, collection: str | None = None) -> list[dict[str, Any]]:
    """Every recorded drill (of ``collection``), oldest first; unreadable records are skipped."""
    out = []
    for key in sorted(store.list(PREFIX)):
        try:
            doc = json.loads(store.read(key))
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(doc, dict) and (collection is None or doc.get("collection") == collection):
            out.append({**doc, "key": key})
    return out
