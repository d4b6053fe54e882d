"""A real Milvus for tests, the demo and benchmarks: Milvus Lite, served by ``milvus-lite server``.

Milvus Lite lets one process open a database; a server process holding it lets
the tests, and the ``vecdr`` commands they start, share one database through
``milvus://127.0.0.1:PORT`` (the same gRPC protocol a Milvus server speaks).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecdr.errors import BackendUnavailableError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalMilvus:
    """A running Milvus Lite server: ``uri(collection)`` builds vecdr URIs for it."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, collection: str, **options: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"milvus://127.0.0.1:{self.port}?collection={collection}{extra}"

    def client(self) -> Any:
        from pymilvus import MilvusClient

        return MilvusClient(uri=self.address)

    def stop(self, remove: bool = True) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)


def start(folder: str | os.PathLike[str], timeout: float = 60.0) -> LocalMilvus:
    """Start a Milvus Lite server on a free local port, its database in ``folder``."""
    try:
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError("a local Milvus needs milvus-lite: pip install 'vecdr[milvus]'") from exc
    folder = Path(folder)
    port = free_port()
    log = folder.with_name(folder.name + ".log")
    with open(log, "wb") as out:  # the server's output, for when it fails to start
        process = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(folder),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return LocalMilvus(folder, port, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"milvus-lite server did not listen on port {port} within {timeout:.0f}s")
