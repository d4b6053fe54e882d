"""Making local files durable: fsync a file and its folder, publish a temp file atomically.

A file is written under a temporary name beside its final one, then renamed into
place. The temporary name is random and the file is created exclusively, never
through a symbolic link (:func:`temp_beside`): a link planted at a name vecdr
would use could otherwise make a restore or an export overwrite the link's target.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: The process's umask, read once: a temporary file gets the mode a new file would.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: How a temporary file's name ends (``.<final name>.<random>.vecdr-tmp``).
SUFFIX = ".vecdr-tmp"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Persist a folder's entries (a rename or new name in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_beside(path: str | os.PathLike[str]) -> Path:
    """A new, empty file in ``path``'s folder to write ``path`` to before :func:`publish`.

    Its name is random and it is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``
    (:func:`tempfile.mkstemp`), so it is always a fresh file of this process, never
    an existing file or a link. The caller removes it if it does not publish it.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    return Path(name)


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Refuse to replace anything but a regular file or a link at ``path``: a device
    (``/dev/null``), a pipe, a socket or a folder is never vecdr's to replace, even
    with --force (:class:`TargetExistsError`)."""
    from vecdr.errors import TargetExistsError

    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise TargetExistsError(f"{os.fspath(path)} is {kind}; vecdr replaces only files, even with --force")


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Give a fully written temp file its final name: the name then holds the old file
    or the complete new one, never a partial one, also across a crash. A link at the
    final name is replaced, not followed; anything else but a file is refused."""
    check_replaceable(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write ``path`` atomically: the block writes the temporary file it is given
    (:func:`temp_beside`), which then becomes ``path`` (:func:`publish`); if the block
    or the publish fails, the temporary file is removed and ``path`` is as it was."""
    tmp = temp_beside(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the block that writes ``path`` (a restore target, an export); a full disk, a
    read-only file system or a denied permission becomes :class:`TargetWriteError`
    naming ``path`` and the cause. FAISS reports a failed write as a ``RuntimeError``
    quoting the system's words, which is recognised too."""
    from vecdr.errors import TargetWriteError, VecdrError
    from vecdr.store.oserrors import DENIED, FULL, cause

    try:
        yield
    except TargetWriteError:
        raise
    except OSError as exc:
        if isinstance(exc, VecdrError):
            raise
        # Whatever the system refuses (a full disk, a read-only or pseudo file system,
        # a missing folder), the target cannot be written there.
        raise TargetWriteError(f"writing {path}: {cause(exc)}") from exc
    except RuntimeError as exc:
        text = str(exc)
        for code in sorted(FULL | DENIED):
            if os.strerror(code) in text:
                raise TargetWriteError(f"writing {path}: {cause(OSError(code, os.strerror(code)))}") from exc
        if "write error" in text:
            raise TargetWriteError(f"writing {path}: the write failed") from exc
        raise
