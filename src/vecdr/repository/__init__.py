"""The repository layer: config, objects, manifests, commit records."""

from vecdr.repository.repository import Repository, object_key, utcnow
from vecdr.repository.resolve import collections, pick_collection, resolve

__all__ = ["Repository", "collections", "object_key", "pick_collection", "resolve", "utcnow"]
