"""On-disk formats: segments, manifests, commit records, config. Pure codecs, no I/O."""

from __future__ import annotations

#: The repository format this vecdr writes and the newest it reads.
FORMAT_VERSION = 1
