"""Keys of encrypted repositories: where they come from, how they are derived and checked.

A repository has one 256-bit master key. It is either given as is (``VECDR_KEY``:
64 hex digits) or derived from a passphrase (``VECDR_PASSWORD``, or a prompt on a
terminal) with scrypt over a random salt. ``config.json`` keeps the salt, the scrypt
parameters and a key check value, never the key::

    "encryption": {"cipher": "AES-256-GCM", "chunk": 16777216,
                   "kdf": {"name": "scrypt", "salt": "<hex>", "n": 131072, "r": 8, "p": 1},
                   "key_check": "<hex>"}

Two keys are derived from the master key with HKDF-Expand (HMAC-SHA256): the data
key that encrypts objects, and the key check, bound to the repository id. A wrong
key or passphrase fails the check when the repository is opened, with a clear
error, instead of failing on the first object read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vecdr.errors import IntegrityError, KeyRequiredError, UsageError, WrongKeyError

KEY_ENV = "VECDR_KEY"
PASSWORD_ENV = "VECDR_PASSWORD"
CIPHER = "AES-256-GCM"
#: Plaintext bytes per sealed chunk: objects of any size, each chunk well under
#: AES-GCM's per-call limits.
CHUNK = 16 << 20
#: scrypt cost (OWASP's recommendation: N=2^17, r=8, p=1; 128 MiB and a fraction of a
#: second per derivation, once per process).
SCRYPT = {"n": 1 << 17, "r": 8, "p": 1}
#: The most scrypt work a config may ask for: a config is not authenticated, and an
#: altered one must not make opening it exhaust memory.
SCRYPT_LIMITS = {"n": 1 << 20, "r": 16, "p": 16}
SCRYPT_MEMORY = 1 << 30
SALT_BYTES = 16
KEY_BYTES = 32

#: Asks for a passphrase on a terminal: ``prompt(question, confirm)``. The command line
#: sets it; a library caller gives ``key=`` or ``password=``, or the environment.
PassphrasePrompt = Callable[[str, bool], str]
passphrase_prompt: PassphrasePrompt | None = None

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Secret:
    """What the user gave: a raw master key or a passphrase, and where it came from."""

    key: bytes | None = None
    passphrase: str | None = None
    source: str = "key="

    def __repr__(self) -> str:  # never show the secret itself
        return f"Secret(from {self.source})"


def parse_key(value: bytes | str, source: str) -> bytes:
    """A master key given as 32 bytes or 64 hex digits."""
    if isinstance(value, bytes | bytearray):
        if len(value) != KEY_BYTES:
            raise UsageError(f"the key from {source} must be {KEY_BYTES} bytes, not {len(value)}")
        return bytes(value)
    if not isinstance(value, str) or not _HEX_KEY.fullmatch(value.strip()):
        raise UsageError(f"the key from {source} must be 64 hex digits (make one with: openssl rand -hex 32)")
    return bytes.fromhex(value.strip())


def given(key: bytes | str | None, password: str | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The secret given, by argument first, then by the environment; None when none is."""
    environ = os.environ if environ is None else environ
    if key is not None:
        return Secret(key=parse_key(key, "key="), source="key=")
    if password is not None:
        return Secret(passphrase=_passphrase(password, "password="), source="password=")
    if environ.get(KEY_ENV):
        return Secret(key=parse_key(environ[KEY_ENV], KEY_ENV), source=KEY_ENV)
    if environ.get(PASSWORD_ENV):
        return Secret(passphrase=_passphrase(environ[PASSWORD_ENV], PASSWORD_ENV), source=PASSWORD_ENV)
    return None


def ask(url: str, creating: bool) -> Secret:
    """The passphrase from the terminal prompt; :class:`KeyRequiredError` where there is none."""
    if passphrase_prompt is None:
        ways = f"set {PASSWORD_ENV} (a passphrase) or {KEY_ENV} (64 hex digits)"
        if creating:
            raise KeyRequiredError(f"an encrypted repository needs a key: {ways}, or run on a terminal to be asked")
        raise KeyRequiredError(f"{url} is encrypted: {ways} to open it")
    question = f"passphrase for {'the new repository at ' if creating else ''}{url}: "
    return Secret(passphrase=_passphrase(passphrase_prompt(question, creating), "the prompt"), source="the prompt")


def _passphrase(value: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"the passphrase from {source} is empty")
    return value


def new_settings(secret: Secret, repository_id: str) -> tuple[dict[str, Any], bytes]:
    """The ``encryption`` settings of a new repository and its master key."""
    kdf = {"name": "scrypt", "salt": secrets.token_hex(SALT_BYTES), **SCRYPT}
    master = _master(secret, kdf)
    settings = {"cipher": CIPHER, "chunk": CHUNK, "kdf": kdf, "key_check": _key_check(master, repository_id).hex()}
    return settings, master


def unlock(settings: Mapping[str, Any], repository_id: str, secret: Secret, url: str) -> bytes:
    """The master key, once the secret passes the repository's key check."""
    kdf, check = _validated(settings)
    master = _master(secret, kdf)
    if not hmac.compare_digest(_key_check(master, repository_id), check):
        what = "key" if secret.key is not None else "passphrase"
        raise WrongKeyError(f"the {what} from {secret.source} does not open the encrypted repository at {url}")
    return master


def chunk_of(settings: Mapping[str, Any]) -> int:
    return int(settings["chunk"])


def data_key(master: bytes) -> bytes:
    """The AES-256 key objects are encrypted with."""
    return _expand(master, b"vecdr data key v1")


def _key_check(master: bytes, repository_id: str) -> bytes:
    return _expand(master, b"vecdr key check v1\x00" + repository_id.encode())


def _expand(master: bytes, info: bytes) -> bytes:
    """HKDF-Expand (RFC 5869) of one block: ``master`` is already a uniformly random key."""
    return hmac.new(master, info + b"\x01", hashlib.sha256).digest()


def _master(secret: Secret, kdf: Mapping[str, Any]) -> bytes:
    if secret.key is not None:
        return secret.key
    assert secret.passphrase is not None
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    return hashlib.scrypt(
        secret.passphrase.encode(), salt=bytes.fromhex(kdf["salt"]), n=n, r=r, p=p,
        maxmem=128 * r * (n + p + 2) + (1 << 20), dklen=KEY_BYTES,
    )


def _validated(settings: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes]:
    """The scrypt parameters and key check of ``settings``, refused unless well-formed and bounded."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"config.json: malformed encryption settings ({why})", path="config.json")

    if not isinstance(settings, Mapping) or settings.get("cipher") != CIPHER:
        raise bad(f"cipher must be {CIPHER}")
    chunk = settings.get("chunk")
    if not _whole(chunk) or not 1 << 10 <= chunk <= 1 << 30:
        raise bad("chunk")
    kdf = settings.get("kdf")
    if not isinstance(kdf, Mapping) or kdf.get("name") != "scrypt":
        raise bad("kdf must be scrypt")
    for name, most in SCRYPT_LIMITS.items():
        value = kdf.get(name)
        if not _whole(value) or not 1 <= value <= most:
            raise bad(f"scrypt {name}")
    if kdf["n"] < 2 or kdf["n"] & (kdf["n"] - 1):
        raise bad("scrypt n must be a power of two")
    if 128 * kdf["r"] * kdf["n"] > SCRYPT_MEMORY:
        raise bad("scrypt would need more than 1 GiB")
    salt, check = kdf.get("salt"), settings.get("key_check")
    if not isinstance(salt, str) or not re.fullmatch(r"(?:[0-9a-f]{2}){8,64}", salt):
        raise bad("salt")
    if not isinstance(check, str) or not re.fullmatch(r"[0-9a-f]{64}", check):
        raise bad("key_check")
    return kdf, bytes.fromhex(check)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
