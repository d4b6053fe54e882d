"""The CLI contract, through the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "VECDR_REPOSITORY"}
    full_env.update(env or {})
    assert VECDR, "the vecdr console script is not installed"
    return subprocess.run([VECDR, *args], capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=120)


def ok_json(*args: str, **kw: object) -> dict:
    proc = run(*args, "--json", **kw)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fails(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A failure is a non-zero exit and exactly one line on stderr, no traceback."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vecdr: error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_index(path: Path, vectors: np.ndarray, ids: np.ndarray) -> None:
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(vectors.shape[1], 16))
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(path))


@pytest.fixture
def world(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, 24)).astype(np.float32)
    ids = np.arange(2000, dtype=np.int64) * 5
    write_index(tmp_path / "live.faiss", vectors, ids)
    repo = tmp_path / "repo"
    assert run("init", str(repo)).returncode == 0
    return {"tmp": tmp_path, "repo": str(repo), "vectors": vectors, "ids": ids,
            "source": f"faiss:{tmp_path / 'live.faiss'}"}


def test_snapshot_restore_round_trip_with_json(world: dict) -> None:
    tmp, repo, source = world["tmp"], world["repo"], world["source"]
    first = ok_json("snapshot", repo, source, "--tag", "base")
    assert {"id", "rows", "added", "changed", "deleted", "bytes_written", "seconds"} <= set(first)
    assert (first["rows"], first["added"], first["changed"], first["deleted"]) == (2000, 2000, 0, 0)

    vectors, ids = world["vectors"].copy(), world["ids"]
    vectors[:10] += 1.0
    keep = np.r_[0:1990]  # drop the last ten ids
    write_index(tmp / "live.faiss", np.vstack([vectors[keep], np.ones((5, 24), np.float32)]),
                np.concatenate([ids[keep], [10**9 + i for i in range(5)]]))
    second = ok_json("snapshot", repo, source)
    assert (second["rows"], second["added"], second["changed"], second["deleted"]) == (1995, 5, 10, 10)
    assert second["bytes_written"] < first["bytes_written"] / 10

    listed = ok_json("snapshots", repo)["snapshots"]
    assert [s["id"] for s in listed] == [first["id"], second["id"]]
    assert listed[0]["tags"] == ["base"]
    shown = ok_json("show", repo, "base")
    assert shown["id"] == first["id"] and shown["rows"] == 2000 and shown["dimension"] == 24

    restored = ok_json("restore", repo, first["id"][:8], f"faiss:{tmp / 'old.faiss'}")
    assert restored["rows"] == 2000 and restored["snapshot"] == first["id"]
    assert set(restored["phases"]) >= {"add", "write"} and restored["seconds"] > 0
    old = faiss.read_index(str(tmp / "old.faiss"))
    assert np.array_equal(old.reconstruct_batch(ids), world["vectors"])

    latest = ok_json("restore", repo, "latest", f"faiss:{tmp / 'new.faiss'}")
    assert latest["snapshot"] == second["id"]
    new = faiss.read_index(str(tmp / "new.faiss"))
    assert new.ntotal == 1995
    assert np.array_equal(new.reconstruct_batch(ids[:10]), vectors[:10])

    report = ok_json("verify", repo, "--read-data")
    assert report["ok"] and report["snapshots"] == 2 and not report["errors"]

    exported = ok_json("export", repo, "latest", str(tmp / "out.npy"))
    assert exported["rows"] == 1995
    assert np.load(tmp / "out.npy").shape == (1995, 24)
    assert len(np.load(tmp / "out.ids.npy")) == 1995


def test_repository_from_environment_and_as_of(world: dict) -> None:
    tmp, repo, source = world["tmp"], world["repo"], world["source"]
    env = {"VECDR_REPOSITORY": repo}
    snap = ok_json("snapshot", source, env=env)
    assert ok_json("snapshots", env=env)["snapshots"][0]["id"] == snap["id"]
    result = ok_json("restore", f"faiss:{tmp / 'r.faiss'}", "--as-of", "2999-01-01", env=env)
    assert result["snapshot"] == snap["id"]
    fails(run("restore", repo, f"faiss:{tmp / 's.faiss'}", "--as-of", "2000-01-01"), "no snapshot")
    # With VECDR_REPOSITORY set, REPO is left out: two arguments are SNAPSHOT TARGET, which --as-of excludes.
    fails(run("restore", "latest", f"faiss:{tmp / 's.faiss'}", "--as-of", "2999-01-01", env=env), "not both")
    fails(run("restore", repo, "latest", f"faiss:{tmp / 's.faiss'}", "--as-of", "2999-01-01"), "either")
    assert not (tmp / "s.faiss").exists()


def test_index_factory_override(world: dict) -> None:
    tmp, repo, source = world["tmp"], world["repo"], world["source"]
    ok_json("snapshot", repo, source)
    ok_json("restore", repo, "latest", f"faiss:{tmp / 'flat.faiss'}", "--index-factory", "Flat")
    index = faiss.read_index(str(tmp / "flat.faiss"))
    assert isinstance(faiss.downcast_index(faiss.downcast_index(index).index), faiss.IndexFlat)
    assert np.array_equal(index.reconstruct_batch(world["ids"]), world["vectors"])


def test_errors_are_one_line_and_leave_the_repository_alone(world: dict) -> None:
    tmp, repo, source = world["tmp"], world["repo"], world["source"]
    ok_json("snapshot", repo, source)
    before = sorted(p.relative_to(repo) for p in Path(repo).rglob("*"))

    fails(run("init", repo), "already holds")
    fails(run("snapshots", str(tmp / "nowhere")), "not a vecdr repository")
    fails(run("show", repo, "ffffffff"), "no snapshot matches")
    fails(run("snapshot", repo, "bogus:thing"), "no backend")
    fails(run("snapshot", repo, f"faiss:{tmp / 'missing.faiss'}"), "no FAISS index")
    other = faiss.IndexHNSWFlat(8, 8)
    other.add(np.ones((3, 8), np.float32))
    faiss.write_index(other, str(tmp / "narrow.faiss"))
    fails(run("snapshot", repo, f"faiss:{tmp / 'narrow.faiss'}", "--collection", "live"), "dimension")
    (tmp / "taken.faiss").write_bytes(b"precious")
    fails(run("restore", repo, "latest", f"faiss:{tmp / 'taken.faiss'}"), "--force")
    assert (tmp / "taken.faiss").read_bytes() == b"precious"
    fails(run("restore", repo, "latest"), "Missing argument")
    fails(run("verify", repo, "--no-such-flag"), "No such option")
    bogus_mode = run("snapshot", repo, source, "--mode", "sideways")
    fails(bogus_mode, "mode must be one of")
    assert bogus_mode.returncode == 2
    fails(run("restore", f"faiss:{tmp / 'y.faiss'}", "--as-of", "2999-01-01"), "missing argument REPO")

    assert sorted(p.relative_to(repo) for p in Path(repo).rglob("*")) == before
    forced = ok_json("restore", repo, "latest", f"faiss:{tmp / 'taken.faiss'}", "--force")
    assert forced["rows"] == 2000


def test_lossy_index_needs_embeddings(world: dict) -> None:
    tmp, repo = world["tmp"], world["repo"]
    vectors = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    index = faiss.index_factory(16, "PQ4x4")
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(tmp / "pq.faiss"))
    fails(run("snapshot", repo, f"faiss:{tmp / 'pq.faiss'}"), "embeddings")
    np.save(tmp / "emb.npy", vectors)
    snap = ok_json("snapshot", repo, f"faiss:{tmp / 'pq.faiss'}", "--embeddings", str(tmp / "emb.npy"))
    assert snap["rows"] == 1000
    exported = ok_json("export", repo, "latest", str(tmp / "pq.npy"), "--collection", "pq")
    assert exported["rows"] == 1000
    assert np.array_equal(np.load(tmp / "pq.npy"), vectors)


def test_verify_exits_non_zero_on_corruption(world: dict) -> None:
    repo = world["repo"]
    ok_json("snapshot", repo, world["source"])
    segment = next(Path(repo, "segments").rglob("*.parquet"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    proc = run("verify", repo, "--read-data", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert [e["object"] for e in report["errors"]] == [str(segment.relative_to(repo))]
    fails(run("restore", repo, "latest", f"faiss:{world['tmp'] / 'x.faiss'}"), "sha256")
    assert not (world["tmp"] / "x.faiss").exists()


def test_no_progress_output_when_not_a_terminal(world: dict) -> None:
    proc = run("snapshot", world["repo"], world["source"])
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.startswith("snapshot ")


def test_unknown_uri_option_is_a_usage_error(world: dict) -> None:
    proc = run("snapshot", world["repo"], f"{world['source']}?embedings=x.npy")
    fails(proc, "take no option embedings", "embeddings")
    assert proc.returncode == 2


def test_main_called_in_process_leaves_logging_and_warnings_as_found(capsys: pytest.CaptureFixture[str]) -> None:
    import logging
    import warnings

    from vecdr.cli.main import main

    logger = logging.getLogger("vecdr")
    before = (logger.propagate, list(logger.handlers), warnings.showwarning)
    assert main(["snapshots", "/nonexistent/vecdr-repository"]) == 1
    assert "vecdr: error: " in capsys.readouterr().err
    assert (logger.propagate, list(logger.handlers), warnings.showwarning) == before
