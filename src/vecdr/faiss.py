"""FAISS helpers for users: ``vecdr.faiss.TrackedIndex`` records changes for tracked snapshots."""

from vecdr.backends.faiss import FaissSource, FaissTarget, TrackedIndex
from vecdr.backends.journal import Journal

__all__ = ["FaissSource", "FaissTarget", "Journal", "TrackedIndex"]
