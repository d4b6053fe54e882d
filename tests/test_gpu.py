"""GPU rebuilds (`gpu=` / `--gpu`).

Three kinds of test:

- the choices, as pure functions given explicit inputs: mode and device parsing,
  device choice, memory sizing, the plan for each index shape;
- the CPU side: the fallback and `require` where faiss has no GPU build or sees no
  GPU (skipped where a GPU is usable, since the fallback cannot happen there), and
  the CPU halves of the GPU paths (moving a graph between indexes, filling an id map);
- the GPU paths themselves, marked `gpu` and skipped without a GPU.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.backends import faiss_gpu
from vecdr.backends.faiss import FaissTarget
from vecdr.backends.faiss_gpu import GpuDevice, IndexShape, Plan
from vecdr.errors import TargetError, UsageError, VecdrError

GIB = 1 << 30
GPU_PROBLEM = faiss_gpu.devices()[1]  # None where a GPU is usable

requires_gpu = pytest.mark.skipif(GPU_PROBLEM is not None, reason=f"no usable GPU: {GPU_PROBLEM}")
needs_cagra = pytest.mark.skipif(not faiss_gpu.has_cagra(), reason="this faiss has no CAGRA (not a cuVS build)")
without_gpu = pytest.mark.skipif(GPU_PROBLEM is None, reason="a GPU is usable here, so nothing falls back")


class Recorder:
    """A progress reporter that keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, d)).astype(np.float32)
    x = centers[rng.integers(64, size=n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def recall_at_10(index: Any, x: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> float:
    """Share of the exact 10 nearest ids (brute force) that the index returns."""
    exact = faiss.knn(queries, x, 10)[1]
    truth = ids[exact]
    found = index.search(queries, 10)[1]
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def snapshot_of(repo: vecdr.Repository, index: Any, **kw: Any) -> str:
    return vecdr.snapshot(repo, index, collection="c", **kw).snapshot


def flat_source(x: np.ndarray, ids: np.ndarray) -> Any:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(x.shape[1]))
    index.add_with_ids(x, ids)
    return index


def restore_to_memory(repo: vecdr.Repository, reporter: Any = None, **options: Any) -> tuple[Any, Any]:
    target = FaissTarget(None, **options)
    result = vecdr.engines.restore(repo, target, reporter=reporter or Recorder())
    return target.index, result


# -- modes and devices -------------------------------------------------------------


@pytest.mark.parametrize(("given", "mode"), [
    (None, "auto"), (True, "on"), (False, "off"), ("auto", "auto"), ("ON", "on"),
    (" off ", "off"), ("require", "require"), ("true", "on"), ("false", "off"),
])
def test_modes(given: object, mode: str) -> None:
    assert faiss_gpu.parse_mode(given) == mode


@pytest.mark.parametrize("given", ["fast", "", 1, "required"])
def test_unknown_modes_are_usage_errors(given: object) -> None:
    with pytest.raises(UsageError, match="gpu must be one of auto, on, off, require"):
        faiss_gpu.parse_mode(given)


def test_device_numbers() -> None:
    assert faiss_gpu.parse_device(None) is None
    assert faiss_gpu.parse_device("") is None
    assert faiss_gpu.parse_device("1") == 1
    assert faiss_gpu.parse_device(0) == 0
    for bad in ("-1", "x", -2):
        with pytest.raises(UsageError, match="gpu_device must be a GPU number"):
            faiss_gpu.parse_device(bad)


def test_the_device_with_most_free_memory_is_chosen() -> None:
    found = [GpuDevice(0, 10 * GIB, 80 * GIB), GpuDevice(1, 70 * GIB, 80 * GIB), GpuDevice(2, 30 * GIB, 80 * GIB)]
    assert faiss_gpu.choose_device(found).index == 1
    assert faiss_gpu.choose_device(found, wanted=2).index == 2
    # Unknown free memory ranks below any known amount; ties go to the lowest number.
    assert faiss_gpu.choose_device([GpuDevice(0), GpuDevice(1, 1, 2)]).index == 1
    assert faiss_gpu.choose_device([GpuDevice(0, 5, 9), GpuDevice(1, 5, 9)]).index == 0
    assert faiss_gpu.choose_device([GpuDevice(0), GpuDevice(1)]).index == 0
    assert faiss_gpu.choose_device([]) is None


def test_asking_for_a_missing_device_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="there is no GPU 3: faiss sees GPUs 0…1"):
        faiss_gpu.choose_device([GpuDevice(0), GpuDevice(1)], wanted=3)
    with pytest.raises(UsageError, match="faiss sees no GPU"):
        faiss_gpu.choose_device([], wanted=0)


# -- memory sizing ---------------------------------------------------------------


def test_scratch_memory_is_a_tenth_of_free_within_bounds() -> None:
    assert faiss_gpu.scratch_bytes(8 * GIB) == int(0.8 * GIB)
    assert faiss_gpu.scratch_bytes(1 * GIB) == faiss_gpu.SCRATCH_MIN_BYTES
    assert faiss_gpu.scratch_bytes(80 * GIB) == faiss_gpu.SCRATCH_MAX_BYTES
    assert faiss_gpu.scratch_bytes(None) == faiss_gpu.scratch_bytes(faiss_gpu.ASSUMED_FREE_BYTES)
    assert faiss_gpu.usable_bytes(10 * GIB) == 8 * GIB
    assert faiss_gpu.usable_bytes(None) == int(faiss_gpu.ASSUMED_FREE_BYTES * faiss_gpu.USABLE_FRACTION)


def test_device_sizes() -> None:
    # IVF: codes and an int64 id per row, with room for list growth, plus centroids.
    assert faiss_gpu.ivf_device_bytes(1000, 8, 4, 16) == int(1000 * 24 * 1.25) + 4 * 8 * 4 * 2
    # 1M x 128 IVF-PQ32 lists: about 50 MB; 1M x 768 IVF-Flat: about 3.8 GB.
    assert 45e6 < faiss_gpu.ivf_device_bytes(1_000_000, 128, 4096, 32) < 60e6
    assert 3.5e9 < faiss_gpu.ivf_device_bytes(1_000_000, 768, 4096, 768 * 4) < 4.2e9
    small = faiss_gpu.cagra_device_bytes(1_000_000, 128, 64)
    assert small == 1_000_000 * (128 * 4 + 3 * 64 * 8 + 128 * 2)
    assert faiss_gpu.cagra_device_bytes(2_000_000, 128, 64) == 2 * small
    assert faiss_gpu.cagra_device_bytes(1_000_000, 768, 64) > small


IVFPQ = IndexShape("IndexIVFPQ", 128, "ivf", trains=True, nlist=4096, code_size=32, cloneable=True)
IVFFLAT = IndexShape("IndexIVFFlat", 768, "ivf", trains=True, nlist=4096, code_size=3072,
                     cloneable=True, assignable=True)
HNSW = IndexShape("IndexHNSWFlat", 128, "hnsw", graph_degree=64)


def test_an_ivf_index_that_fits_is_trained_and_filled_on_the_gpu() -> None:
    assert faiss_gpu.plan(IVFPQ, 1_000_000, 70 * GIB, cagra=False) == Plan(True, "device", None, 2 * GIB)
    trained = IndexShape(**{**{f: getattr(IVFPQ, f) for f in IVFPQ.__slots__}, "trains": False})
    assert faiss_gpu.plan(trained, 1_000_000, 70 * GIB, cagra=False).train is False


def test_an_ivf_index_too_big_for_the_gpu_adds_on_the_cpu() -> None:
    decided = faiss_gpu.plan(IVFPQ, 2_000_000_000, 70 * GIB, cagra=False)
    assert (decided.train, decided.add, decided.uses_gpu) == (True, "cpu", True)
    assert "inverted lists need about 93.1 GiB of GPU memory and 54.0 GiB is usable" in decided.problem
    assert decided.fallback == "adding the vectors on the CPU"


def test_an_ivf_flat_too_big_keeps_its_lists_in_host_memory() -> None:
    assert faiss_gpu.plan(IVFFLAT, 1_000_000, 70 * GIB, cagra=False).add == "device"
    decided = faiss_gpu.plan(IVFFLAT, 100_000_000, 70 * GIB, cagra=False)
    assert (decided.add, decided.problem) == ("assign", None)


def test_unknown_free_memory_plans_with_the_assumed_amount() -> None:
    fits = faiss_gpu.plan(IVFPQ, 50_000_000, None, cagra=False)  # about 2.4 GB of lists
    assert fits.add == "device"
    assert faiss_gpu.plan(IVFPQ, 80_000_000, None, cagra=False).add == "cpu"


def test_ivf_variants_without_a_gpu_add_path_still_train_there() -> None:
    fast_scan = IndexShape("IndexIVFPQFastScan", 128, "ivf", trains=True, nlist=1024, code_size=16)
    decided = faiss_gpu.plan(fast_scan, 1_000_000, 70 * GIB, cagra=True)
    assert (decided.train, decided.add) == (True, "cpu")
    assert decided.problem == "vecdr has no GPU add path for a IndexIVFPQFastScan"
    trained = IndexShape("IndexIVFPQFastScan", 128, "ivf", nlist=1024, code_size=16)
    assert not faiss_gpu.plan(trained, 1_000_000, 70 * GIB, cagra=True).uses_gpu


def test_hnsw_plans() -> None:
    assert faiss_gpu.plan(HNSW, 1_000_000, 70 * GIB, cagra=True) == Plan(False, "graph", None, 2 * GIB)
    without = faiss_gpu.plan(HNSW, 1_000_000, 70 * GIB, cagra=False)
    assert (without.add, without.fallback) == ("cpu", "building the graph on the CPU")
    assert "through CAGRA, which this faiss lacks" in without.problem
    too_big = faiss_gpu.plan(HNSW, 100_000_000, 70 * GIB, cagra=True)
    assert too_big.add == "cpu" and "needs about 214.6 GiB of GPU memory and 54.0 GiB is usable" in too_big.problem
    tiny = faiss_gpu.plan(HNSW, faiss_gpu.MIN_GRAPH_ROWS - 1, 70 * GIB, cagra=True)
    assert (tiny.add, tiny.problem) == ("cpu", None)
    quantized = IndexShape("IndexHNSWSQ", 128, "hnsw")
    assert "IndexHNSWSQ has no GPU build path" in faiss_gpu.plan(quantized, 1_000_000, 70 * GIB, True).problem


def test_flat_and_other_indexes() -> None:
    flat = faiss_gpu.plan(IndexShape("IndexFlat", 128, "flat"), 10**9, 70 * GIB, cagra=True)
    assert (flat.uses_gpu, flat.problem) == (False, None)
    other = faiss_gpu.plan(IndexShape("IndexPQ", 128, "other"), 10**6, 70 * GIB, cagra=True)
    assert (other.uses_gpu, other.problem, other.fallback) == (
        False, "a IndexPQ has no GPU build path", "rebuilding on the CPU")


# -- index shapes, read off real (CPU) indexes --------------------------------------


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: faiss.index_factory(32, "IVF64,PQ8"),
     dict(family="ivf", trains=True, nlist=64, code_size=8, cloneable=True, assignable=False)),
    (lambda: faiss.index_factory(32, "IVF64,Flat"),
     dict(family="ivf", trains=True, nlist=64, code_size=128, cloneable=True, assignable=True)),
    (lambda: faiss.index_factory(32, "IVF64,SQ8"), dict(family="ivf", cloneable=True, assignable=False)),
    (lambda: faiss.index_factory(32, "OPQ8,IVF64,PQ8"),
     dict(name="IndexPreTransform", family="ivf", trains=True, cloneable=False)),
    (lambda: faiss.IndexIDMap2(faiss.index_factory(32, "IVF64,Flat")),
     dict(family="ivf", cloneable=False, assignable=True)),
    (lambda: faiss.index_factory(32, "IVF64,PQ8x4fs"), dict(family="ivf", cloneable=False, assignable=False)),
    (lambda: faiss.index_factory(32, "HNSW16"), dict(name="IndexHNSWFlat", family="hnsw", graph_degree=32)),
    (lambda: faiss.IndexIDMap2(faiss.IndexHNSWFlat(32, 8)), dict(family="hnsw", graph_degree=16)),
    (lambda: faiss.index_factory(32, "HNSW16_SQ8"), dict(family="hnsw", graph_degree=0)),
    (lambda: faiss.IndexIDMap2(faiss.IndexFlatIP(32)), dict(family="flat")),
    (lambda: faiss.index_factory(32, "PQ8"), dict(family="other")),
])
def test_index_shapes(build: Any, expected: dict[str, Any]) -> None:
    shape = faiss_gpu.index_shape(build())
    assert shape.dimension == 32
    for field, value in expected.items():
        assert getattr(shape, field) == value, field


def test_a_trained_ivf_index_does_not_train_again() -> None:
    index = faiss.index_factory(16, "IVF8,Flat")
    index.train(clustered(1000, 16))
    assert faiss_gpu.index_shape(index).trains is False


# -- the CPU halves of the GPU paths -------------------------------------------------


def test_a_built_graph_moves_into_an_hnsw_flat_index() -> None:
    x = clustered(3000, 16)
    donor = faiss.IndexHNSWCagra(16, 8)
    donor.base_level_only = False
    donor.add(x)
    queries = x[:40] + 0.01
    expected = donor.search(queries, 10)
    target = faiss.IndexHNSWFlat(16, 8)
    target.hnsw.efSearch = 64
    faiss_gpu.adopt_hnsw(target, donor)
    del donor
    gc.collect()
    assert target.ntotal == 3000 and target.hnsw.efSearch == 64
    target.hnsw.efSearch = 16  # the donor's, to compare like with like
    found = target.search(queries, 10)
    assert np.array_equal(found[1], expected[1]) and np.array_equal(found[0], expected[0])
    copy = faiss.deserialize_index(faiss.serialize_index(target))
    assert type(faiss.downcast_index(copy)) is faiss.IndexHNSWFlat
    target.add(x[:5])  # still an ordinary HNSW index
    assert target.ntotal == 3005


def test_a_graph_goes_only_into_an_empty_index() -> None:
    donor = faiss.IndexHNSWCagra(8, 4)
    donor.add(clustered(100, 8))
    target = faiss.IndexHNSWFlat(8, 4)
    target.add(clustered(10, 8))
    with pytest.raises(TargetError, match="must be empty"):
        faiss_gpu.adopt_hnsw(target, donor)


def test_an_id_map_is_filled_after_its_inner_index() -> None:
    x = clustered(500, 8)
    ids = np.arange(500, dtype=np.int64) * 7 + 3
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    index.index.add(x)  # filled directly, as a GPU build fills it
    faiss_gpu.fill_id_map(index, ids)
    assert index.ntotal == 500
    assert np.array_equal(index.search(x[:20], 1)[1][:, 0], ids[:20])
    assert np.array_equal(index.reconstruct(int(ids[9])), x[9])  # IDMap2's reverse map
    other = faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    other.index.add(x[:3])
    with pytest.raises(TargetError, match="2 ids for an id map over 3 vectors"):
        faiss_gpu.fill_id_map(other, ids[:2])


# -- without a GPU: the fallback, and require ------------------------------------------


@pytest.fixture
def hnsw_repo(repo: vecdr.Repository) -> vecdr.Repository:
    x = clustered(faiss_gpu.MIN_GRAPH_ROWS + 1000, 16)
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(16, 8))
    index.add_with_ids(x, np.arange(len(x), dtype=np.int64) * 3)
    snapshot_of(repo, index)
    return repo


@without_gpu
def test_on_falls_back_to_the_cpu_with_one_warning(hnsw_repo: vecdr.Repository, tmp_path: Path) -> None:
    on, off = Recorder(), Recorder()
    vecdr.restore(hnsw_repo, f"faiss:{tmp_path / 'on.faiss'}", gpu="on", reporter=on)
    vecdr.restore(hnsw_repo, f"faiss:{tmp_path / 'off.faiss'}", gpu="off", reporter=off)
    assert len(on.warnings) == 1, on.warnings
    assert on.warnings[0] == f"{GPU_PROBLEM}; rebuilding on the CPU"
    assert off.warnings == []
    # The fallback is the CPU restore itself: the same graph, byte for byte.
    assert (tmp_path / "on.faiss").read_bytes() == (tmp_path / "off.faiss").read_bytes()


@without_gpu
def test_auto_falls_back_quietly(hnsw_repo: vecdr.Repository, tmp_path: Path) -> None:
    quiet = Recorder()
    vecdr.restore(hnsw_repo, f"faiss:{tmp_path / 'auto.faiss'}", reporter=quiet)
    vecdr.restore(hnsw_repo, f"faiss:{tmp_path / 'off.faiss'}", gpu=False, reporter=quiet)
    assert quiet.warnings == []
    assert (tmp_path / "auto.faiss").read_bytes() == (tmp_path / "off.faiss").read_bytes()


@without_gpu
def test_require_fails_and_writes_nothing(hnsw_repo: vecdr.Repository, tmp_path: Path) -> None:
    out = tmp_path / "required.faiss"
    with pytest.raises(faiss_gpu.GpuUnavailableError) as caught:
        vecdr.restore(hnsw_repo, f"faiss:{out}", gpu="require")
    assert isinstance(caught.value, TargetError) and isinstance(caught.value, VecdrError)
    assert str(caught.value) == f"a GPU rebuild was required, but {GPU_PROBLEM}"
    assert not out.exists() and list(tmp_path.glob(".required*")) == []


@without_gpu
def test_ivf_training_falls_back_too(repo: vecdr.Repository) -> None:
    x = clustered(3000, 16)
    snapshot_of(repo, flat_source(x, np.arange(3000, dtype=np.int64)))
    on = Recorder()
    index, result = restore_to_memory(repo, on, factory="IVF16,PQ4", gpu="on")
    assert len(on.warnings) == 1 and on.warnings[0].endswith("; rebuilding on the CPU")
    assert index.ntotal == 3000 and "train" in result.phases and "to_host" not in result.phases


def test_flat_indexes_need_no_gpu_and_get_no_warning(repo: vecdr.Repository) -> None:
    x = clustered(500, 8)
    snapshot_of(repo, flat_source(x, np.arange(500, dtype=np.int64)))
    on = Recorder()
    index, _ = restore_to_memory(repo, on, gpu="on")
    assert on.warnings == [] and index.ntotal == 500


def test_gpu_options_in_a_target_uri(repo: vecdr.Repository, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="gpu must be one of"):
        vecdr.restore(repo, f"faiss:{tmp_path / 'x.faiss'}?gpu=fast")
    with pytest.raises(UsageError, match="gpu_device must be a GPU number"):
        vecdr.restore(repo, f"faiss:{tmp_path / 'x.faiss'}?gpu_device=first")


# -- the command line --------------------------------------------------------------

VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


def vecdr_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VECDR_REPOSITORY"}
    assert VECDR, "the vecdr console script is not installed"
    return subprocess.run([VECDR, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def cli_repo(tmp_path: Path) -> str:
    x = clustered(faiss_gpu.MIN_GRAPH_ROWS + 500, 16)
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(16, 8))
    index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    faiss.write_index(index, str(tmp_path / "live.faiss"))
    repo = str(tmp_path / "repo")
    assert vecdr_cli("init", repo).returncode == 0
    assert vecdr_cli("snapshot", repo, f"faiss:{tmp_path / 'live.faiss'}").returncode == 0
    return repo


def one_line(stream: str, prefix: str) -> str:
    lines = stream.strip().splitlines()
    assert len(lines) == 1, stream
    assert lines[0].startswith(prefix) and "Traceback" not in stream
    return lines[0]


@without_gpu
def test_cli_require_without_a_gpu(cli_repo: str, tmp_path: Path) -> None:
    proc = vecdr_cli("restore", cli_repo, "latest", f"faiss:{tmp_path / 'out.faiss'}", "--gpu", "require")
    assert proc.returncode == 1
    line = one_line(proc.stderr, "vecdr: error: ")
    assert line == f"vecdr: error: a GPU rebuild was required, but {GPU_PROBLEM}"
    assert not (tmp_path / "out.faiss").exists()


@without_gpu
def test_cli_on_without_a_gpu_warns_once(cli_repo: str, tmp_path: Path) -> None:
    proc = vecdr_cli("restore", cli_repo, "latest", f"faiss:{tmp_path / 'out.faiss'}", "--gpu", "on")
    assert proc.returncode == 0, proc.stderr
    assert one_line(proc.stderr, "vecdr: warning: ").endswith("; rebuilding on the CPU")
    assert faiss.read_index(str(tmp_path / "out.faiss")).ntotal == faiss_gpu.MIN_GRAPH_ROWS + 500


@pytest.mark.parametrize("mode", [None, "auto", "off"])
def test_cli_quiet_modes(cli_repo: str, tmp_path: Path, mode: str | None) -> None:
    extra = ["--gpu", mode] if mode else []
    proc = vecdr_cli("restore", cli_repo, "latest", f"faiss:{tmp_path / 'out.faiss'}", *extra)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_cli_bad_gpu_values(cli_repo: str, tmp_path: Path) -> None:
    proc = vecdr_cli("restore", cli_repo, "latest", f"faiss:{tmp_path / 'out.faiss'}", "--gpu", "fast")
    assert proc.returncode == 2
    assert one_line(proc.stderr, "vecdr: error: ") == (
        "vecdr: error: gpu must be one of auto, on, off, require, not 'fast'")
    proc = vecdr_cli("restore", cli_repo, "latest", f"parquet:{tmp_path / 'out.parquet'}", "--gpu", "on")
    assert proc.returncode == 2
    assert "parquet targets take no option gpu" in one_line(proc.stderr, "vecdr: error: ")


# -- on a GPU ----------------------------------------------------------------------


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("factory", ["IVF64,PQ8", "IVF64,Flat", "IVF64,SQ8"])
def test_ivf_rebuild_on_the_gpu(factory: str, repo: vecdr.Repository) -> None:
    x = clustered(20_000, 32)
    ids = np.arange(20_000, dtype=np.int64) * 2
    snapshot_of(repo, flat_source(x, ids))
    on = Recorder()
    gpu_index, gpu_result = restore_to_memory(repo, on, factory=factory, gpu="require")
    cpu_index, _ = restore_to_memory(repo, factory=factory, gpu="off")
    assert on.warnings == []
    assert "to_host" in gpu_result.phases
    assert type(faiss.downcast_index(gpu_index)).__name__ == type(faiss.downcast_index(cpu_index)).__name__
    assert gpu_index.ntotal == 20_000
    queries = clustered(200, 32, seed=9)
    for index in (gpu_index, cpu_index):
        faiss.extract_index_ivf(index).nprobe = 8
    assert recall_at_10(gpu_index, x, queries, ids) >= recall_at_10(cpu_index, x, queries, ids) - 0.05


@pytest.mark.gpu
@requires_gpu
def test_ivf_flat_assigns_on_the_gpu_with_lists_in_host_memory() -> None:
    x = clustered(20_000, 32)
    ids = np.arange(20_000, dtype=np.int64)
    index = faiss.index_factory(32, "IVF64,Flat")
    shape = faiss_gpu.index_shape(index)
    found, _ = faiss_gpu.devices()
    build = faiss_gpu.GpuBuild(Plan(True, "assign", None, faiss_gpu.SCRATCH_MIN_BYTES), found[0], shape,
                               len(x), "require", lambda message: None)
    build.train(index, x[:5000])
    reference = faiss.clone_index(index)
    same = build.to_device(index)
    assert same is index and "Gpu" in type(faiss.downcast_index(index.quantizer)).__name__
    index.add_with_ids(x, ids)
    assert build.to_host(index) is index
    assert type(faiss.downcast_index(index.quantizer)) in (faiss.IndexFlat, faiss.IndexFlatL2)
    del build
    gc.collect()
    reference.add_with_ids(x, ids)
    sizes = [index.invlists.list_size(i) for i in range(64)]
    assert sizes == [reference.invlists.list_size(i) for i in range(64)]
    index.nprobe = reference.nprobe = 4
    assert np.array_equal(index.search(x[:100], 5)[1], reference.search(x[:100], 5)[1])


@pytest.mark.gpu
@requires_gpu
@needs_cagra
@pytest.mark.parametrize("with_ids", [True, False])
def test_hnsw_rebuild_through_cagra(with_ids: bool, repo: vecdr.Repository) -> None:
    x = clustered(20_000, 32)
    ids = np.arange(20_000, dtype=np.int64) * (5 if with_ids else 1)
    source = faiss.IndexHNSWFlat(32, 16)
    if with_ids:
        source = faiss.IndexIDMap2(source)
        source.add_with_ids(x, ids)
    else:
        source.add(x)
    snapshot_of(repo, source)
    on = Recorder()
    gpu_index, result = restore_to_memory(repo, on, gpu="require")
    cpu_index, _ = restore_to_memory(repo, gpu="off")
    assert on.warnings == [] and "add" in result.phases
    inner = faiss.downcast_index(faiss.downcast_index(gpu_index).index if with_ids else gpu_index)
    assert type(inner) is faiss.IndexHNSWFlat and inner.hnsw.nb_neighbors(0) == 32
    assert gpu_index.ntotal == 20_000
    queries = clustered(200, 32, seed=9)
    for index in (gpu_index, cpu_index):
        faiss.downcast_index(index.index if with_ids else index).hnsw.efSearch = 128
    assert recall_at_10(gpu_index, x, queries, ids) >= recall_at_10(cpu_index, x, queries, ids) - 0.05


@pytest.mark.gpu
@requires_gpu
def test_on_a_gpu_require_refuses_what_has_no_gpu_path(repo: vecdr.Repository) -> None:
    x = clustered(faiss_gpu.MIN_GRAPH_ROWS + 100, 16)
    snapshot_of(repo, flat_source(x, np.arange(len(x), dtype=np.int64)))
    with pytest.raises(faiss_gpu.GpuUnavailableError, match="IndexHNSWSQ has no GPU build path"):
        restore_to_memory(repo, factory="HNSW8_SQ8", gpu="require")
    on = Recorder()
    index, _ = restore_to_memory(repo, on, factory="HNSW8_SQ8", gpu="on")
    assert len(on.warnings) == 1 and on.warnings[0].endswith("; building the graph on the CPU")
    assert index.ntotal == len(x)


@pytest.mark.gpu
@requires_gpu
def test_devices_report_their_memory() -> None:
    found, problem = faiss_gpu.devices()
    assert problem is None and found
    for device in found:
        assert device.total and 0 < device.free <= device.total


def test_a_faiss_error_while_adding_on_the_gpu_is_a_target_error() -> None:
    """A failure once the index lives on the GPU (say, out of memory) is a one-line TargetError."""
    target = FaissTarget(None, gpu="off")
    target.index = faiss.index_factory(8, "IVF4,Flat")  # untrained: FAISS refuses to add
    target._gpu = object()  # stands for a build whose index was moved to a GPU
    with pytest.raises(TargetError, match="adding vectors on the GPU failed .*--gpu off"):
        target._add(np.arange(3, dtype=np.int64), np.zeros((3, 8), np.float32))
    target._gpu = None  # on the CPU the FAISS error is left as it is
    with pytest.raises(RuntimeError):
        target._add(np.arange(3, dtype=np.int64), np.zeros((3, 8), np.float32))
