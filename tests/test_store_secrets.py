"""Secrets never reach a message: credentials in a repository URL are refused without being
echoed, and every wrapped third-party error is scrubbed of what it quotes."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.cli.main import main
from vecdr.errors import StoreError, UsageError
from vecdr.store import RetryingStore, open_store
from vecdr.store.secrets import scrub
from vecdr.testing.faults import WrappedStore

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSECRETKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "ya29.a0AfH6SMBxGCStokenvalue"

#: Every command that takes a repository, with the arguments it needs past it.
COMMANDS = {
    "init": [], "snapshot": ["faiss:{tmp}/live.faiss"], "snapshots": [], "show": ["latest"],
    "restore": ["latest", "faiss:/tmp/never.faiss"], "verify": [], "export": ["latest", "/tmp/never.npy"],
    "forget": ["--keep-last", "1"], "prune": [], "compact": [], "drill": [], "drills": [], "status": [],
    "unlock": [],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.fault("credentials in an S3 URL: `vecdr {command}` refuses them and never echoes the secret",
                   store="s3")
def test_credentials_in_a_url_are_refused_and_never_echoed(
    s3: Any, command: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = s3.make_bucket()
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(4))
    index.add_with_ids(np.ones((3, 4), np.float32), np.arange(3))
    faiss.write_index(index, str(tmp_path / "live.faiss"))
    for name, value in s3.env().items():
        if name != "AWS_SECRET_ACCESS_KEY":
            monkeypatch.setenv(name, value)
    url = f"s3://{KEY_ID}:{SECRET}@{bucket}/backups"
    code = main([command, url, *(a.format(tmp=tmp_path) for a in COMMANDS[command])])
    out, err = capfd.readouterr()
    assert code == 2, (out, err)
    assert SECRET not in out + err and SECRET.split("/")[0] not in out + err
    assert err.strip().splitlines() == [err.strip()] and "must not hold credentials" in err
    assert "AWS_SECRET_ACCESS_KEY" in err  # says where credentials go instead


@pytest.mark.fault("credentials in a bucket URL: the API refuses them and never echoes the secret", store="s3")
@pytest.mark.parametrize("url", [f"s3://{KEY_ID}:{SECRET}@bucket/p", f"s3a://{KEY_ID}:{SECRET}@bucket",
                                 f"gs://{TOKEN}@bucket/p", f"s3://{KEY_ID}@bucket/p"])
def test_the_api_refuses_credentials_in_a_url(url: str) -> None:
    for call in (vecdr.init, vecdr.open_repository, open_store):
        with pytest.raises(UsageError) as refused:
            call(url)
        for secret in (SECRET, TOKEN, KEY_ID):
            assert secret not in str(refused.value) and secret not in repr(refused.value)
        assert "***@bucket" in str(refused.value)


class Quoting(WrappedStore):
    """A store whose every read fails with a message that quotes credentials, as client libraries do."""

    def __init__(self, inner: Any, message: str, code: int) -> None:
        super().__init__(inner)
        self.message, self.code = message, code

    def read(self, key: str) -> bytes:
        raise OSError(self.code, self.message)


@pytest.mark.fault("a wrapped store error quoting credentials is scrubbed", store="s3")
@pytest.mark.parametrize("code", [errno.EINVAL, errno.EACCES, errno.ETIMEDOUT])
def test_wrapped_store_errors_are_scrubbed(s3: Any, s3_url: str, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "FQoGZXIvYXdzEPT//////////wEaDSESSIONTOKENVALUE"
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    store = open_store(s3_url, s3.storage_options(secret=SECRET))  # remembered as a secret to mask
    assert isinstance(store, RetryingStore)
    message = (f"request to https://{KEY_ID}:{SECRET}@host/x failed: secret={SECRET} token='{token}' "
               f"'aws_secret_access_key': '{SECRET}' password: hunter22 raw {SECRET} Key=backups/config.json")
    failing = RetryingStore(Quoting(store.inner, message, code), attempts=2, backoff=0)
    with pytest.raises(StoreError) as failed:
        failing.read("config.json")
    text = str(failed.value)
    for secret in (SECRET, token, "hunter22"):
        assert secret not in text
    assert "config.json" in text  # the object is still named


def test_scrub_keeps_what_is_not_a_secret() -> None:
    text = "reading s3://bucket/p/segments/ab/x.parquet failed: NoSuchKey, Key=p/x sse_kms_key_id=alias/k"
    assert scrub(text) == text
    assert scrub("s3://a:b@bucket/p") == "s3://***@bucket/p"


def test_the_cli_masks_an_error_that_quotes_a_secret(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # A local repository path that happens to look like key=value is not a secret; the line stays one line.
    code = main(["snapshots", str(tmp_path / "nothing-here")])
    _out, err = capfd.readouterr()
    assert code == 1 and err.startswith("vecdr: error: ") and len(err.strip().splitlines()) == 1
