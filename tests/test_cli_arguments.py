"""Arguments every command shares: snapshot references, tags, ``VECDR_REPOSITORY``, bounds.

Each case runs through the API and through the real console script.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.engines.restore import open_snapshot
from vecdr.errors import AmbiguousSnapshotError, UsageError
from vecdr.testing.cli import assert_one_line_error, run

D = 8


def _index(n: int, seed: int = 0) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32), np.arange(n))
    return index


def _commits(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / "commits").iterdir())


@pytest.fixture
def two(tmp_path: Path) -> dict[str, Any]:
    """A repository with two snapshots of collection ``c`` (the first tagged ``base``) and a source file."""
    repo = vecdr.init(tmp_path / "repo")
    first = vecdr.snapshot(repo, _index(50), collection="c", tags=["base"])
    second = vecdr.snapshot(repo, _index(60, 1), collection="c")
    faiss.write_index(_index(40, 2), str(tmp_path / "live.faiss"))
    return {"tmp": tmp_path, "repo": tmp_path / "repo", "first": first.snapshot, "second": second.snapshot,
            "source": f"faiss:{tmp_path / 'live.faiss'}"}


def _many(commands: list[list[str]], env: dict[str, str] | None = None, workers: int = 4) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda args: run(*args, env=env), commands))


# -- empty and blank snapshot references ------------------------------------------------------------

BLANKS = ["", " ", "\t"]


@pytest.mark.fault("empty or blank snapshot reference (API)")
@pytest.mark.parametrize("ref", BLANKS, ids=repr)
def test_the_api_refuses_an_empty_reference(two: dict[str, Any], ref: str) -> None:
    tmp, repo = two["tmp"], str(two["repo"])
    before = _commits(two["repo"])
    calls = [
        lambda: vecdr.restore(repo, f"faiss:{tmp / 'out.faiss'}", ref),
        lambda: vecdr.restore_index(repo, ref),
        lambda: vecdr.export(repo, ref, tmp / "out.parquet"),
        lambda: vecdr.export(repo, ref, tmp / "out.npy"),
        lambda: vecdr.forget(repo, [ref]),
        lambda: vecdr.forget(repo, [two["first"], ref]),
        lambda: vecdr.compact(repo, ref),
        lambda: vecdr.drill(repo, ref),
        lambda: open_snapshot(vecdr.open_repository(repo), ref),
        lambda: vecdr.restore(repo, f"faiss:{tmp / 'out.faiss'}", ref, as_of="2999-01-01"),
    ]
    for call in calls:
        with pytest.raises(UsageError, match="snapshot reference"):
            call()
    assert _commits(two["repo"]) == before
    assert not list(tmp.glob("out*"))
    # None still means latest to the API.
    assert vecdr.restore(repo, f"faiss:{tmp / 'out.faiss'}", None).snapshot == two["second"]


@pytest.mark.fault("empty or blank snapshot reference (console script)")
def test_the_console_script_refuses_an_empty_reference_everywhere(two: dict[str, Any], cases: Any) -> None:
    tmp, repo = two["tmp"], str(two["repo"])
    before = _commits(two["repo"])
    commands = []
    for ref in BLANKS:
        commands += [
            ["show", repo, ref],
            ["restore", repo, ref, f"faiss:{tmp / 'out.faiss'}"],
            ["export", repo, ref, str(tmp / "out.parquet")],
            ["export", repo, ref, str(tmp / "out.npy")],
            ["forget", repo, ref],
            ["forget", repo, two["first"], ref],
            ["compact", repo, ref],
            ["drill", repo, ref],
        ]
    cases.plan(len(commands))
    for args, proc in zip(commands, _many(commands), strict=True):
        assert proc.returncode == 2, (args, proc.stderr)
        assert_one_line_error(proc, "snapshot reference")
        cases.ok()
    assert _commits(two["repo"]) == before  # nothing was forgotten, nothing compacted
    assert not list(tmp.glob("out*"))


# -- tags that would hide ids or ``latest`` --------------------------------------------------------


@pytest.mark.fault("tag that reads as latest or as a snapshot id")
@pytest.mark.parametrize("tag", ["latest", "LATEST", "cafe", "0123abcd", "DEADBEEF", "1234"])
def test_tags_that_read_as_something_else_are_refused(two: dict[str, Any], tag: str) -> None:
    before = _commits(two["repo"])
    with pytest.raises(UsageError, match="tag"):
        vecdr.snapshot(str(two["repo"]), two["source"], tags=[tag])
    proc = run("snapshot", str(two["repo"]), two["source"], "--tag", tag)
    assert proc.returncode == 2
    assert_one_line_error(proc, repr(tag))
    assert _commits(two["repo"]) == before


def test_tags_with_a_letter_beyond_f_or_a_separator_are_fine(two: dict[str, Any]) -> None:
    result = vecdr.snapshot(str(two["repo"]), two["source"], tags=["v1234", "2026-01-01", "abc", "nightly"])
    for tag in ("v1234", "2026-01-01", "abc", "nightly"):
        assert open_snapshot(vecdr.open_repository(str(two["repo"])), tag).snapshot == result.snapshot


@pytest.mark.fault("an old tag that shadows a snapshot id prefix")
def test_a_tag_that_is_also_an_id_prefix_is_ambiguous(two: dict[str, Any]) -> None:
    # Written by an older vecdr (or by hand): a tag on the first snapshot that starts the second's id.
    repo = two["repo"]
    prefix = two["second"][:8]
    record = next(p for p in (repo / "commits").iterdir() if two["first"] in p.read_text())
    doc = json.loads(record.read_text())
    doc["tags"] = [prefix]
    record.write_text(json.dumps(doc))
    with pytest.raises(AmbiguousSnapshotError, match="full id"):
        open_snapshot(vecdr.open_repository(str(repo)), prefix)
    before = _commits(repo)
    proc = run("forget", str(repo), prefix)
    assert proc.returncode == 1
    assert_one_line_error(proc, "full id")
    assert _commits(repo) == before
    assert open_snapshot(vecdr.open_repository(str(repo)), two["second"]).snapshot == two["second"]


@pytest.mark.fault("forget --keep-tag naming a tag no snapshot carries")
def test_keep_tag_that_no_snapshot_carries_forgets_nothing(two: dict[str, Any]) -> None:
    repo = two["repo"]
    before = _commits(repo)
    with pytest.raises(UsageError, match="'bsae'"):
        vecdr.forget(str(repo), keep_tags=["bsae"])
    with pytest.raises(UsageError, match="'bsae'"):
        vecdr.forget(str(repo), keep_tags=["base", "bsae"], keep_last=1)
    proc = run("forget", str(repo), "--keep-tag", "bsae")
    assert proc.returncode == 2
    assert_one_line_error(proc, "no snapshot", "bsae")
    assert _commits(repo) == before
    kept = vecdr.forget(str(repo), keep_tags=["base"])  # a tag that exists works as before
    assert [d.commit.snapshot for d in kept.kept] == [two["first"]]


# -- VECDR_REPOSITORY -------------------------------------------------------------------------------


@pytest.mark.fault("VECDR_REPOSITORY stands for REPO in every command")
def test_every_command_takes_the_repository_from_the_environment(two: dict[str, Any], cases: Any) -> None:
    tmp, repo = two["tmp"], str(two["repo"])
    env = {"VECDR_REPOSITORY": repo}
    (tmp / "vecdr.toml").write_text(f"[collections.c]\ntarget = 'faiss:{tmp / 'recovered.faiss'}'\n")
    readers = [
        ["snapshots"], ["show", "base"], ["show", "latest", "-c", "c"], ["verify"], ["drills"], ["status"],
        ["restore", "base", f"faiss:{tmp / 'a.faiss'}"],
        ["restore", f"faiss:{tmp / 'b.faiss'}", "--as-of", "2999-01-01"],
        ["export", "latest", str(tmp / "e.parquet")], ["drill"], ["drill", "base"], ["unlock"],
        ["recover", "--policy", str(tmp / "vecdr.toml")],
    ]
    # Maintenance takes the exclusive lock: one at a time.
    writers = [["compact"], ["compact", "latest"], ["prune", "--dry-run"], ["forget", "--keep-last", "5", "--dry-run"],
               ["forget", "base", "--dry-run"], ["snapshot", two["source"], "-c", "other"]]
    cases.plan(len(readers) + len(writers) + 1)
    procs = _many([[*a, "--json"] for a in readers], env) + _many([[*a, "--json"] for a in writers], env, 1)
    for args, proc in zip(readers + writers, procs, strict=True):
        assert proc.returncode == 0, (args, proc.stderr)
        json.loads(proc.stdout)
        cases.ok()
    assert (tmp / "a.faiss").exists() and (tmp / "b.faiss").exists() and (tmp / "recovered.faiss").exists()
    # init too, into the environment's location.
    fresh = tmp / "fresh"
    assert run("init", env={"VECDR_REPOSITORY": str(fresh)}).returncode == 0
    assert (fresh / "config.json").exists()
    cases.ok()


def test_an_explicit_repository_still_wins_where_every_argument_is_given(two: dict[str, Any]) -> None:
    tmp, repo = two["tmp"], str(two["repo"])
    elsewhere = {"VECDR_REPOSITORY": str(tmp / "nowhere")}
    for args in (["snapshots", repo], ["show", repo, "base"], ["drill", repo, "base"], ["compact", repo, "latest"],
                 ["restore", repo, "base", f"faiss:{tmp / 'x.faiss'}"]):
        proc = run(*args, "--json", env=elsewhere)
        assert proc.returncode == 0, (args, proc.stderr)


def test_restore_with_as_of_and_a_snapshot_is_a_usage_error_with_the_variable_set(two: dict[str, Any]) -> None:
    tmp, repo = two["tmp"], str(two["repo"])
    proc = run("restore", "latest", f"faiss:{tmp / 's.faiss'}", "--as-of", "2999-01-01",
               env={"VECDR_REPOSITORY": repo})
    assert proc.returncode == 2
    assert_one_line_error(proc, "either a SNAPSHOT or --as-of", "VECDR_REPOSITORY")
    assert not (tmp / "s.faiss").exists()


# -- --quality-sample -------------------------------------------------------------------------------


@pytest.mark.fault("--quality-sample beyond its maximum")
def test_quality_sample_has_a_maximum(two: dict[str, Any]) -> None:
    repo = str(two["repo"])
    before = _commits(two["repo"])
    for bad in (10_001, 1_000_000, -1):
        with pytest.raises(UsageError, match="quality_sample"):
            vecdr.snapshot(repo, two["source"], quality_sample=bad)
        proc = run("snapshot", repo, two["source"], "--quality-sample", str(bad))
        assert proc.returncode == 2
        assert_one_line_error(proc, "--quality-sample")
    with pytest.raises(UsageError, match="whole number"):
        vecdr.snapshot(repo, two["source"], quality_sample=2.5)  # type: ignore[arg-type]
    assert _commits(two["repo"]) == before
    # The most allowed, on fewer rows than that: capped at the rows.
    result = vecdr.snapshot(repo, two["source"], collection="q", quality_sample=10_000)
    manifest = open_snapshot(vecdr.open_repository(repo), result.snapshot)
    from vecdr.format.quality import decode_quality

    sample = decode_quality(vecdr.open_repository(repo).get(manifest.artifacts["quality"]), "quality")
    assert len(sample.queries) == 40


# -- names shown literally --------------------------------------------------------------------------

MARKUP, ANSI, NEWLINE = "[bold red]EVIL[/]", "\x1b[31mred\x1b[0m", "two\nlines"


@pytest.mark.fault("names with markup, ANSI escapes or newlines printed to the terminal")
def test_names_are_printed_literally(tmp_path: Path, cases: Any) -> None:
    repo = vecdr.init(tmp_path / "repo")
    for i, name in enumerate((MARKUP, ANSI, NEWLINE)):
        vecdr.snapshot(repo, _index(30, i), collection=name, tags=[f"t-{name}"])
        vecdr.drill(repo, collection=name)
    url, env = str(tmp_path / "repo"), {"COLUMNS": "250"}
    commands = [["snapshots", url], ["status", url], ["drills", url], ["forget", url, "--keep-last", "1", "-n"]]
    commands += [["show", url, "latest", "-c", name] for name in (MARKUP, ANSI, NEWLINE)]
    commands += [["drill", url, "-c", name] for name in (MARKUP, ANSI, NEWLINE)]
    errors = [["show", url, f"t-{MARKUP}x"], ["show", url, ANSI], ["show", url, NEWLINE], ["snapshots", ANSI],
              ["restore", url, "latest", f"faiss:{tmp_path / ANSI}[red]x", "-c", MARKUP]]
    (tmp_path / f"{ANSI}[red]x").write_bytes(b"taken")  # the restore's error names it
    cases.plan(len(commands) + len(errors))
    for args, proc in zip(commands + errors, _many(commands + errors, env=env), strict=True):
        text = proc.stdout + proc.stderr
        assert "\x1b" not in text and "\r" not in text, (args, text)
        assert "lines" not in [line.strip() for line in text.splitlines()], (args, text)
        if args in commands:
            assert proc.returncode == 0, (args, proc.stderr)
            names = {MARKUP, ANSI, NEWLINE} if args[0] in ("snapshots", "status", "drills", "forget") \
                else {args[-1]}
            for name in names:
                literal = name.encode("unicode_escape").decode()
                assert literal in proc.stdout or repr(name)[1:-1] in proc.stdout, (args, proc.stdout)
        else:
            assert_one_line_error(proc)
            named = (MARKUP, ANSI, NEWLINE, f"t-{MARKUP}x", f"{ANSI}[red]x")
            assert any(repr(part)[1:-1] in proc.stderr for part in named), (args, proc.stderr)
        cases.ok()


@pytest.mark.fault("--keep-within or --grace reaching before year 1")
def test_durations_longer_than_the_calendar_keep_everything(two: dict[str, Any]) -> None:
    repo = str(two["repo"])
    kept = run("forget", repo, "--keep-within", "100000y", "--json")
    assert kept.returncode == 0, kept.stderr
    assert len(json.loads(kept.stdout)["kept"]) == 2 and not json.loads(kept.stdout)["removed"]
    assert run("prune", repo, "--grace", "100000y").returncode == 0
    assert len(vecdr.snapshots(repo)) == 2
