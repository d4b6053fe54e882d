"""The Milvus backend: collections in Milvus Lite (a local ``.db`` folder) or on a server.

``milvus:PATH.db?collection=NAME`` (Milvus Lite), ``milvus://host:19530?collection=NAME``
or ``milvus+https://host?collection=NAME`` (a server; token by ``token=`` or
``VECDR_MILVUS_TOKEN``). As a source it snapshots the collection's schema,
partitions, indexes and rows at one point in time; as a target it restores a
snapshot (of Milvus or of another engine) into a new collection. See docs/milvus.md.
"""

from __future__ import annotations

from vecdr.backends.milvus.source import MilvusSource
from vecdr.backends.milvus.target import MilvusTarget

__all__ = ["MilvusSource", "MilvusTarget"]
