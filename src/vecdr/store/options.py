"""Storage options: how a repository URL's filesystem is opened.

Object stores are configured the way their own tools are. For S3, the standard
AWS credential chain (``AWS_ACCESS_KEY_ID``…, ``AWS_PROFILE``, instance roles),
``AWS_ENDPOINT_URL`` for MinIO, R2, Ceph and the like, and ``AWS_REGION`` all work
unchanged, because s3fs hands them to botocore. vecdr adds:

==========================  ==============================  =========================================
option                      environment                     meaning
==========================  ==============================  =========================================
``endpoint_url``            ``AWS_ENDPOINT_URL``            an S3-compatible endpoint
``region``                  ``AWS_REGION``                  the bucket's region
``sse``                     ``VECDR_S3_SSE``                ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS)
``sse_kms_key_id``          ``VECDR_S3_SSE_KMS_KEY_ID``     the KMS key (implies ``aws:kms``)
``concurrency``             ``VECDR_CONCURRENCY``           transfers at once (default 8 remote, 1 local)
``retries``                 ``VECDR_RETRIES``               vecdr's attempts per request (default 4)
==========================  ==============================  =========================================

Any other option goes to the fsspec filesystem as is (``key``, ``secret``,
``profile``, ``token``, ``anon`` for s3fs; gcsfs's and adlfs's own for ``gs://``
and ``az://``). Options are never written to the repository, and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vecdr.errors import UsageError

#: Server-side encryption modes S3 knows.
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
#: Protocols reached over the network: their stores retry, and transfer in parallel.
REMOTE_DEFAULT_CONCURRENCY = 8

S3_PROTOCOLS = ("s3", "s3a")


#: Options vecdr itself takes; the rest go to the filesystem.
OWN = ("concurrency", "retries")


def _count(options: Mapping[str, Any], name: str, variable: str, default: int, most: int) -> int:
    value = options.get(name)
    if value is None:  # not `or`: an explicit 0 is a mistake to report, not a default to take
        value = os.environ.get(variable) or None
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a whole number, not {value!r}") from None
    if not 1 <= n <= most:
        raise UsageError(f"{name} must be between 1 and {most}, not {n}")
    return n


def concurrency(options: Mapping[str, Any], remote: bool) -> int:
    return _count(options, "concurrency", "VECDR_CONCURRENCY", REMOTE_DEFAULT_CONCURRENCY if remote else 1, 256)


def retries(options: Mapping[str, Any]) -> int:
    return _count(options, "retries", "VECDR_RETRIES", 4, 100)


def s3_filesystem_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """s3fs keyword arguments for vecdr's storage options (see the module)."""
    given = {k: v for k, v in options.items() if k not in OWN}
    endpoint = given.pop("endpoint_url", None)
    region = given.pop("region", None) or os.environ.get("AWS_REGION")  # botocore reads AWS_DEFAULT_REGION
    sse = given.pop("sse", None) or os.environ.get("VECDR_S3_SSE") or None
    kms_key = given.pop("sse_kms_key_id", None) or os.environ.get("VECDR_S3_SSE_KMS_KEY_ID") or None
    if kms_key and not sse:
        sse = "aws:kms"
    if sse is not None and sse not in SSE_MODES:
        raise UsageError(f"server-side encryption must be one of {', '.join(SSE_MODES)}, not {sse!r}")
    if kms_key and not sse.startswith("aws:kms"):
        raise UsageError(f"a KMS key id needs sse=aws:kms, not {sse}")
    put_args: dict[str, str] = {}
    if sse:
        put_args["ServerSideEncryption"] = sse
    if kms_key:
        put_args["SSEKMSKeyId"] = kms_key
    client: dict[str, Any] = dict(given.pop("client_kwargs", None) or {})
    if endpoint:
        client["endpoint_url"] = endpoint
    if region:
        client["region_name"] = region
    # botocore retries each request with jittered backoff ("standard" mode: timeouts,
    # 5xx, throttling, resets); vecdr's RetryingStore retries what is left after that.
    own_config = dict(given.pop("config_kwargs", None) or {})
    config: dict[str, Any] = {"connect_timeout": 10, "read_timeout": 120, **own_config,
                              "retries": {"total_max_attempts": 3, "mode": "standard", **own_config.get("retries", {})}}
    return {
        "client_kwargs": client,
        "config_kwargs": config,
        "s3_additional_kwargs": {**put_args, **(given.pop("s3_additional_kwargs", None) or {})},
        **given,
    }
