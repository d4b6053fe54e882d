"""The store conformance suite.

Subclass :class:`StoreTests` and provide a ``store`` fixture that returns a fresh,
empty :class:`vecdr.store.Store`::

    class TestLocalStore(StoreTests):
        @pytest.fixture
        def store(self, tmp_path):
            return LocalStore(tmp_path / "store")
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vecdr.store import Store

#: Every byte value, so no store can get away with text-mode or newline translation.
ALL_BYTES = bytes(range(256)) * 4


class StoreTests:
    """Read, write, create-if-absent, exists, size, list and delete, as the commit protocol needs."""

    #: Threads racing to ``create`` one key.
    racers = 8

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a StoreTests subclass must provide a `store` fixture")

    # -- read and write ----------------------------------------------------------

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_fresh_store_is_empty(self, store: Store) -> None:
        assert list(store.list()) == []

    def test_write_then_read(self, store: Store) -> None:
        store.write("objects/one", ALL_BYTES)
        assert store.read("objects/one") == ALL_BYTES

    def test_empty_object(self, store: Store) -> None:
        store.write("objects/empty", b"")
        assert store.exists("objects/empty")
        assert store.read("objects/empty") == b""
        assert store.size("objects/empty") == 0

    def test_write_replaces(self, store: Store) -> None:
        store.write("objects/k", b"first version")
        store.write("objects/k", b"second")
        assert store.read("objects/k") == b"second"
        assert store.size("objects/k") == len(b"second")
        assert sorted(store.list("objects")) == ["objects/k"]

    def test_read_missing_raises_file_not_found(self, store: Store) -> None:
        with pytest.raises(FileNotFoundError):
            store.read("objects/absent")

    def test_size(self, store: Store) -> None:
        store.write("objects/k", b"x" * 1234)
        assert store.size("objects/k") == 1234

    def test_size_missing_raises_file_not_found(self, store: Store) -> None:
        with pytest.raises(FileNotFoundError):
            store.size("objects/absent")

    def test_exists(self, store: Store) -> None:
        assert not store.exists("objects/k")
        store.write("objects/k", b"1")
        assert store.exists("objects/k")
        assert not store.exists("objects/k2")

    def test_a_folder_is_not_an_object(self, store: Store) -> None:
        store.write("dir/sub/key", b"1")
        assert not store.exists("dir")
        assert not store.exists("dir/sub")

    # -- create-if-absent --------------------------------------------------------

    def test_create_writes_when_absent(self, store: Store) -> None:
        store.create("commits/00000000000000000001.json", b"record one")
        assert store.read("commits/00000000000000000001.json") == b"record one"

    def test_create_existing_raises_file_exists_and_keeps_the_old_bytes(self, store: Store) -> None:
        store.create("commits/1", b"winner")
        with pytest.raises(FileExistsError):
            store.create("commits/1", b"loser")
        assert store.read("commits/1") == b"winner"

    def test_create_over_a_written_object_raises_file_exists(self, store: Store) -> None:
        store.write("commits/1", b"written")
        with pytest.raises(FileExistsError):
            store.create("commits/1", b"created")
        assert store.read("commits/1") == b"written"

    def test_create_after_delete_succeeds(self, store: Store) -> None:
        store.create("locks/l", b"1")
        store.delete("locks/l")
        store.create("locks/l", b"2")
        assert store.read("locks/l") == b"2"

    def test_concurrent_create_has_exactly_one_winner(self, store: Store) -> None:
        if not store.atomic_create:
            pytest.skip(f"{type(store).__name__} declares create-if-absent non-atomic")
        for round_ in range(5):
            key = f"commits/{round_:020d}.json"
            barrier = threading.Barrier(self.racers)

            def race(i: int, key: str = key, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait(timeout=30)
                try:
                    store.create(key, f"writer {i}".encode() * 100)
                except FileExistsError:
                    return False
                return True

            with ThreadPoolExecutor(self.racers) as pool:
                won = list(pool.map(race, range(self.racers)))
            assert sum(won) == 1, f"round {round_}: {sum(won)} writers won"
            winner = won.index(True)
            assert store.read(key) == f"writer {winner}".encode() * 100

    # -- keys and listing --------------------------------------------------------

    def test_nested_keys(self, store: Store) -> None:
        keys = ["segments/ab/abcdef.parquet", "a/b/c/d/e/f.bin", "top"]
        for i, key in enumerate(keys):
            store.write(key, bytes([i]) * (i + 1))
        for i, key in enumerate(keys):
            assert store.read(key) == bytes([i]) * (i + 1)
            assert store.size(key) == i + 1
        assert sorted(store.list()) == sorted(keys)

    def test_create_nested_key_in_a_new_folder(self, store: Store) -> None:
        store.create("new/folder/deep/key.json", b"{}")
        assert store.read("new/folder/deep/key.json") == b"{}"

    def test_list_prefix_is_a_folder(self, store: Store) -> None:
        store.write("a/x", b"1")
        store.write("a/b/c/d", b"2")
        store.write("ab/y", b"3")
        store.write("b", b"4")
        assert sorted(store.list("a")) == ["a/b/c/d", "a/x"]
        assert sorted(store.list("a/b")) == ["a/b/c/d"]
        assert sorted(store.list("ab")) == ["ab/y"]
        assert sorted(store.list()) == ["a/b/c/d", "a/x", "ab/y", "b"]

    def test_list_of_absent_prefix_is_empty(self, store: Store) -> None:
        assert list(store.list("nothing/here")) == []
        store.write("something/else", b"1")
        assert list(store.list("nothing")) == []
        assert list(store.list("some")) == []

    def test_list_shows_no_temporary_files(self, store: Store) -> None:
        for i in range(5):
            store.write(f"objects/{i}", b"x" * i)
            store.create(f"commits/{i}", b"c")
        with pytest.raises(FileExistsError):
            store.create("commits/0", b"again")
        assert sorted(store.list("objects")) == [f"objects/{i}" for i in range(5)]
        assert sorted(store.list("commits")) == [f"commits/{i}" for i in range(5)]

    def test_list_info_gives_sizes_and_recent_modified_times(self, store: Store) -> None:
        before = time.time()
        store.write("segments/ab/one", b"x" * 10)
        store.create("commits/1", b"yy")
        after = time.time()
        infos = {info.key: info for info in store.list_info()}
        assert sorted(infos) == sorted(store.list()) == ["commits/1", "segments/ab/one"]
        assert (infos["segments/ab/one"].size, infos["commits/1"].size) == (10, 2)
        for info in infos.values():
            # Object stores keep whole seconds; clocks of client and server may differ a little.
            assert before - 5 <= info.modified <= after + 5, info
        assert [i.key for i in store.list_info("segments")] == ["segments/ab/one"]
        assert list(store.list_info("nothing")) == []

    # -- delete ------------------------------------------------------------------

    def test_delete(self, store: Store) -> None:
        store.write("objects/k", b"1")
        store.write("objects/keep", b"2")
        store.delete("objects/k")
        assert not store.exists("objects/k")
        with pytest.raises(FileNotFoundError):
            store.read("objects/k")
        assert sorted(store.list("objects")) == ["objects/keep"]

    def test_delete_absent_is_ignored(self, store: Store) -> None:
        store.delete("objects/never-written")
        store.delete("no/such/folder/key")
        assert list(store.list()) == []
