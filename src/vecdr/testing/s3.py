"""A real S3 endpoint for tests, the demo and benchmarks: moto's server, plus a fault proxy.

:func:`start` runs ``python -m moto.server`` on 127.0.0.1 in a child process (its
own interpreter, so the server's work does not share this process's GIL) and
returns a :class:`LocalS3` that makes buckets and builds vecdr URLs and storage
options for it. vecdr talks to it through s3fs only, exactly as to AWS.

:class:`FaultProxy` sits between vecdr and the server: it forwards every request
and, as its ``plan`` says, delays it, answers 503 or 500 without forwarding,
drops the connection before forwarding, or forwards and then drops the answer (the
request took effect, the client cannot know). It also counts the bytes PUT.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Credentials moto accepts when it does not check them.
KEY, SECRET = "vecdr-test-key", "vecdr-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalS3:
    """A running S3 endpoint."""

    endpoint: str
    process: subprocess.Popen[bytes] | None = None
    key: str = KEY
    secret: str = SECRET

    def client(self, key: str | None = None, secret: str | None = None, service: str = "s3") -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=key or self.key, aws_secret_access_key=secret or self.secret,
        )

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"vecdr-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_options(self, endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
        """What ``vecdr.init`` / ``vecdr.open_repository`` take to reach this server."""
        return {"endpoint_url": endpoint or self.endpoint, "key": self.key, "secret": self.secret,
                "region": REGION, **extra}

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """Environment variables that point the AWS credential chain and the CLI here."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": endpoint or self.endpoint, "AWS_DEFAULT_REGION": REGION}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started it ends (Linux)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(free_requests: int | None = None, timeout: float = 60.0) -> LocalS3:
    """Start moto's S3 server on a free 127.0.0.1 port.

    With ``free_requests``, the server checks credentials and permissions (IAM)
    after that many first requests, which :func:`iam_user` and bucket creation use.
    """
    try:
        import moto  # noqa: F401
    except ImportError as exc:
        from vecdr.errors import BackendUnavailableError

        raise BackendUnavailableError("a local S3 server needs moto: pip install 'moto[server]'") from exc
    port = free_port()
    env = {**os.environ, "MOTO_PORT": str(port)}
    if free_requests is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(free_requests)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto's server did not start on port {port}") from None
            time.sleep(0.1)
    return LocalS3(endpoint, process)


def iam_user(s3: LocalS3, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    """Create an IAM user with ``policy`` on an ``auth`` server; returns its key and secret."""
    import json

    iam = s3.client(service="iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    created = iam.create_access_key(UserName=name)["AccessKey"]
    return created["AccessKeyId"], created["SecretAccessKey"]


# -- fault injection ---------------------------------------------------------------------

#: What the proxy does with one request: ``"pass"``, ``"503"``, ``"500"``, ``"403"``, ``"drop"``
#: (close before forwarding), ``"lost-reply"`` (forward, then close without answering),
#: or a number of seconds to wait before forwarding.
Action = str | float
Plan = Callable[["Request"], Action]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    number: int  # 1-based count of requests the proxy has seen


@dataclass
class FaultProxy:
    """An HTTP proxy in front of an S3 endpoint that injects faults as ``plan`` says."""

    upstream: str
    plan: Plan = lambda request: "pass"  # noqa: E731
    seen: list[tuple[Request, Action]] = field(default_factory=list)
    put_bytes: int = 0
    get_bytes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        host, port = self.upstream.removeprefix("http://").split(":")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    request = Request(self.command, self.path, dict(self.headers), len(proxy.seen) + 1)
                    action = proxy.plan(request)
                    proxy.seen.append((request, action))
                if action in ("503", "500", "403"):
                    code = {"503": "SlowDown", "500": "InternalError", "403": "AccessDenied"}[action]
                    payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(int(action))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, int | float) and not isinstance(action, bool):
                    time.sleep(float(action))
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                finally:
                    conn.close()
                with proxy._lock:
                    if self.command == "PUT" and reply.status < 300:
                        proxy.put_bytes += len(body)
                    if self.command == "GET" and reply.status < 300:
                        proxy.get_bytes += len(data)
                if action == "lost-reply":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(reply.status, reply.reason)
                for name, value in reply.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def actions(self, method: str | None = None) -> list[Action]:
        """What was done to each request (of ``method``), in order."""
        return [a for r, a in self.seen if method is None or r.method == method]

    def reset_counts(self) -> None:
        with self._lock:
            self.seen.clear()
            self.put_bytes = self.get_bytes = 0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
