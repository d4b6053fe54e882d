"""Temporary files are never written through a planted link.

vecdr writes every local file under a temporary name beside its final one and
renames it into place. Those names are random and created exclusively without
following links; a link planted at any name vecdr once used (``.NAME.vecdr-tmp``,
``BASE.tmp``) keeps its target intact.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.backends.journal import Journal
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 8
VICTIM = b"precious data that no restore may touch\n"


def index_of(n: int = 300) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(7).standard_normal((n, D)).astype(np.float32), np.arange(n))
    return index


def plant(folder: Path, names: list[str], victim: Path) -> None:
    for name in names:
        (folder / name).symlink_to(victim)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "vecdr-tmp" in p.name or p.name.endswith(".tmp"))


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_bytes(VICTIM)
    return path


OUTPUTS = {
    "restore faiss:": ("index.faiss", [".index.faiss.vecdr-tmp"]),
    "restore parquet:": ("rows.parquet", [".rows.parquet.vecdr-tmp"]),
    "export .parquet": ("rows.parquet", [".rows.parquet.vecdr-tmp"]),
    "export .npy": ("vectors.npy", [".vectors.npy.vecdr-tmp", ".vectors.ids.npy.vecdr-tmp"]),
}


@pytest.mark.parametrize("way", sorted(OUTPUTS))
@pytest.mark.fault("a link planted at a temporary name: {way} does not write through it")
def test_a_link_at_a_temporary_name_is_not_written_through(
    repo: vecdr.Repository, tmp_path: Path, victim: Path, way: str
) -> None:
    index = index_of()
    vecdr.snapshot(repo, index, collection="c")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    name, temporaries = OUTPUTS[way]
    plant(out_dir, temporaries, victim)
    out = out_dir / name
    if way.startswith("restore"):
        vecdr.restore(repo, f"{way.split()[1]}{out}", "latest")
    else:
        vecdr.export(repo, "latest", out)
    assert victim.read_bytes() == VICTIM
    assert all((out_dir / t).is_symlink() for t in temporaries)  # left alone: vecdr did not make them
    assert leftovers(out_dir) == sorted(temporaries)
    if name.endswith(".faiss"):
        assert_same_rows(faiss_rows(faiss.read_index(str(out))), faiss_rows(index))
    elif name.endswith(".parquet"):
        assert pq.read_table(out).num_rows == index.ntotal
    else:
        assert np.load(out).shape == (index.ntotal, D)
        assert sorted(np.load(out_dir / "vectors.ids.npy")) == list(range(index.ntotal))


@pytest.mark.fault("a link planted at the journal's BASE.tmp is not written through")
def test_a_link_at_the_journal_base_temporary_is_not_written_through(tmp_path: Path, victim: Path) -> None:
    folder = tmp_path / "idx.journal"
    folder.mkdir()
    plant(folder, ["BASE.tmp"], victim)
    journal = Journal(folder, D)
    assert victim.read_bytes() == VICTIM
    assert (folder / "BASE").is_file() and not (folder / "BASE").is_symlink()
    journal.upsert(np.arange(3), np.ones((3, D), np.float32))
    assert victim.read_bytes() == VICTIM
    assert leftovers(folder) == ["BASE.tmp"]


@pytest.mark.fault("a failed .npy export leaves no temporary file")
def test_a_failed_export_leaves_no_temporary(repo: vecdr.Repository, tmp_path: Path) -> None:
    vecdr.snapshot(repo, index_of(), collection="c")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "vectors.ids.npy").mkdir()  # the ids cannot take their name
    with pytest.raises(vecdr.VecdrError, match="folder"):
        vecdr.export(repo, "latest", out_dir / "vectors.npy", force=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["vectors.ids.npy"]
