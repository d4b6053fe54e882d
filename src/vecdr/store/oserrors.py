"""Operating-system errors of a write or read as vecdr's typed errors, naming the object.

A full disk, a read-only mount and a denied permission are conditions the user
fixes, not bugs: each becomes one of vecdr's errors that says which object and why.
"""

from __future__ import annotations

import errno

from vecdr.errors import StoreAccessError, StoreError, StoreFullError
from vecdr.store.secrets import scrub

#: errno values meaning "no room": a full device, a quota, a file size limit.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: errno values meaning "not allowed here".
DENIED = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def cause(exc: OSError) -> str:
    """What went wrong, in words (without the path the OS error may repeat)."""
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if exc.errno == errno.EFBIG:
        return "the file is larger than this system allows"
    return scrub(exc.strerror or " ".join(str(exc).split()) or type(exc).__name__)


def typed(op: str, where: str, exc: OSError) -> StoreError:
    """The vecdr error for ``exc``, raised while ``op`` (e.g. "writing") ``where`` (the object)."""
    if exc.errno in FULL:
        return StoreFullError(f"{op} {where}: {cause(exc)}")
    if exc.errno in DENIED:
        return StoreAccessError(f"{op} {where}: {cause(exc)}")
    return StoreError(f"{op} {where} failed: {cause(exc)}")
