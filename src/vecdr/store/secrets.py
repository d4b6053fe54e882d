"""Keeping secrets out of every message: credentials in URLs, ``key=`` values, known secrets.

Third-party errors (botocore, s3fs, gcsfs, adlfs) sometimes quote what they were
given: a URL with ``user:password@``, a request's parameters, a signed query
string. Every store error vecdr wraps, and every line the CLI prints as an error,
passes through :func:`scrub` first. :func:`remember` adds the secret values of a
store's options (``secret``, ``token``, …), which are then masked wherever they
appear, whatever the library's wording around them.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

#: Option names whose values are secrets (matched case-insensitively, also inside longer names).
SECRET_NAMES = ("secret", "password", "passwd", "token", "credential", "account_key", "sas", "signature",
                "private_key", "access_key", "key")
#: Environment variables holding secrets that a client library may quote.
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CLIENT_SECRET", "VECDR_PASSWORD", "VECDR_KEY")

# user@ or user:password@ right after the scheme. A password may hold "/" (AWS secret keys
# do), which ends a URL's authority, so with a ":" anything up to the first "@" counts.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][\w+.-]*://)(?P<cred>[^/@\s'\"]+|[^@\s'\"/]*:[^@\s'\"]*)@")
# name=value, name: value, "name": "value", name='value' — for the names above, also
# within longer ones (aws_secret_access_key, X-Amz-Security-Token, SecretAccessKey).
_ASSIGNED = re.compile(
    r"(?P<name>[\w.-]*(?:" + "|".join(SECRET_NAMES) + r")[\w.-]*)(?P<sep>['\"]?\s*[=:]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&)}\]]+)",
    re.IGNORECASE,
)
#: Names matched by _ASSIGNED that are not secrets (the key of an object, a key id to show).
_NOT_SECRET = re.compile(r"^(key|keys|object_?key|s3_?key|sse_kms_key_id|ssekmskeyid|key_?id|keyid)$", re.IGNORECASE)

_known: set[str] = set()
_lock = threading.Lock()


def remember(options: Mapping[str, Any] | None) -> None:
    """Mask the secret values among ``options`` (nested dicts included) in every later :func:`scrub`."""
    found: list[str] = []

    def walk(mapping: Mapping[str, Any]) -> None:
        for name, value in mapping.items():
            if isinstance(value, Mapping):
                walk(value)
            elif isinstance(value, str) and any(s in str(name).lower() for s in SECRET_NAMES):
                found.append(value)

    walk(options or {})
    with _lock:
        _known.update(v for v in found if len(v) >= 4)


def _values() -> list[str]:
    with _lock:
        values = set(_known)
    values.update(v for name in SECRET_VARIABLES if len(v := os.environ.get(name, "")) >= 4)
    return sorted(values, key=len, reverse=True)  # longest first: a secret that contains another


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with credentials in URLs, secret-looking ``name=value`` pairs and every known secret masked."""
    text = redact_url(text)

    def assigned(m: re.Match[str]) -> str:
        if _NOT_SECRET.match(m.group("name")):
            return m.group(0)
        return f"{m.group('name')}{m.group('sep')}{MASK}"

    text = _ASSIGNED.sub(assigned, text)
    for value in [*extra, *_values()]:
        if value and len(value) >= 4:
            text = text.replace(value, MASK)
    return text


def url_credentials(url: str) -> str | None:
    """The ``user:password`` (or ``user``) part of ``url``, if it has one."""
    m = _URL_CREDENTIALS.match(url)
    return m.group("cred") if m is not None else None


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced by ``***@``."""
    def mask(m: re.Match[str]) -> str:
        if m.group("cred").endswith(f":{MASK}"):
            return m.group(0)  # already redacted (user:***@): the user name helps and is no secret
        return f"{m.group('scheme')}{MASK}@"

    return _URL_CREDENTIALS.sub(mask, url)
