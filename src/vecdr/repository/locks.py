"""Lock objects: ``locks/exclusive.json`` for one writer alone, ``locks/shared-<id>.json`` beside others.

A lock is an object holding who took it and until when it holds (``expires``, a
Unix time). While its holder runs, a heartbeat thread rewrites it with a later
expiry, so a lock whose holder died expires on its own and is *stale*; a stale
lock is never broken silently, but :func:`unlock` (``vecdr unlock``) removes it.

- An exclusive lock is taken by create-if-absent of ``locks/exclusive.json``,
  then granted only if no live shared lock exists (else it is given back).
- A shared lock is written under its own name, then kept only if no live
  exclusive lock exists (else it is removed again).

Both check after writing, so of an exclusive and a shared taker racing, at least
one sees the other and backs off. That relies on every read of a lock reaching the
store itself: stores keep no client-side listing cache (see :mod:`vecdr.store.fsspec`).
A lock whose holder (``host:pid``) ran on this host and is no longer running is
stale at once. Maintenance (forget, prune) takes the exclusive lock; on a store
without atomic create-if-absent, every snapshot does too, so writers run one at a time.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from types import TracebackType

from vecdr.errors import LockedError
from vecdr.store import Store

PREFIX = "locks"
EXCLUSIVE = f"{PREFIX}/exclusive.json"
#: How long a lock holds without a heartbeat, and how often the holder renews it.
DEFAULT_TTL = 600.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    kind: str  # "exclusive" or "shared"
    holder: str  # host:pid
    purpose: str
    created: float
    expires: float

    def stale(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires or self.holder_gone()

    def holder_gone(self) -> bool:
        """Whether the holder was a process on this host that no longer runs: its lock is stale
        at once, not only when its heartbeat runs out (a killed snapshot must not block prune)."""
        host, _, pid = self.holder.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # PermissionError: it runs, as another user
            return False
        return False

    def describe(self) -> str:
        if self.holder_gone():
            state = "stale (its process is gone)"
        else:
            state = "stale" if self.stale() else f"held for {max(0.0, self.expires - time.time()):.0f}s more"
        return f"{self.kind} lock of {self.holder} ({self.purpose}), {state}"


def _read(store: Store, key: str) -> LockInfo | None:
    try:
        doc = json.loads(store.read(key))
        return LockInfo(key=key, **{k: doc[k] for k in ("kind", "holder", "purpose", "created", "expires")})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Unreadable: treat as held until someone removes it with `vecdr unlock --all`.
        return LockInfo(key, "exclusive" if key == EXCLUSIVE else "shared", "unknown", "unreadable", 0.0, float("inf"))


def list_locks(store: Store) -> list[LockInfo]:
    """Every lock object in the repository (stale ones included)."""
    found = [_read(store, key) for key in sorted(store.list(PREFIX)) if key.endswith(".json")]
    return [lock for lock in found if lock is not None]


def unlock(store: Store, all_locks: bool = False) -> list[LockInfo]:
    """Remove stale locks (every lock with ``all_locks``); returns what was removed."""
    removed = []
    for lock in list_locks(store):
        if all_locks or lock.stale():
            store.delete(lock.key)
            removed.append(lock)
    return removed


class Lock:
    """A held lock, renewed by a heartbeat until :meth:`release` (or the ``with`` block ends)."""

    def __init__(self, store: Store, kind: str, purpose: str, ttl: float = DEFAULT_TTL) -> None:
        if kind not in ("exclusive", "shared"):
            raise ValueError(f"lock kind must be exclusive or shared, not {kind!r}")
        self.store = store
        self.kind = kind
        self.purpose = purpose
        self.ttl = ttl
        self.key = EXCLUSIVE if kind == "exclusive" else f"{PREFIX}/shared-{uuid.uuid4().hex}.json"
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = time.time()
        info = LockInfo(self.key, self.kind, self.holder, self.purpose, now, now + self.ttl)
        doc = {k: v for k, v in asdict(info).items() if k != "key"}
        return json.dumps(doc, sort_keys=True).encode()

    def acquire(self) -> Lock:
        if self.kind == "exclusive":
            try:
                self.store.create(self.key, self._body())
            except FileExistsError:
                held = _read(self.store, self.key)
                raise LockedError(self._refusal(held)) from None
            others = [lock for lock in list_locks(self.store) if lock.kind == "shared" and not lock.stale()]
        else:
            self.store.write(self.key, self._body())
            exclusive = _read(self.store, EXCLUSIVE)
            others = [exclusive] if exclusive is not None and not exclusive.stale() else []
        if others:
            self.store.delete(self.key)
            raise LockedError(self._refusal(others[0]))
        self._thread = threading.Thread(target=self._heartbeat, name="vecdr-lock", daemon=True)
        self._thread.start()
        return self

    def _refusal(self, held: LockInfo | None) -> str:
        if held is None:
            return f"the repository at {self.store.url} was locked a moment ago; try again"
        way_out = ("it is stale: remove it with `vecdr unlock`" if held.stale()
                   else "wait for it, or if its holder is gone, `vecdr unlock --all`")
        return f"{self.store.url} is locked: {held.describe()}; {way_out}"

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 10):
            try:
                current = _read(self.store, self.key)
                if current is None or current.holder != self.holder:
                    return  # broken with `vecdr unlock` (and maybe taken since): never overwrite it
                self.store.write(self.key, self._body())
            except OSError:
                pass  # the next beat tries again; the lock expires only after ttl

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.delete(self.key)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
