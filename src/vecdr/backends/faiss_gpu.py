"""FAISS rebuilds on a GPU: which device, what fits in its memory, and the GPU paths.

A restore asks for ``gpu`` = ``auto`` (the default: use a GPU when faiss has one,
quietly build on the CPU otherwise), ``on`` (the same, with one warning when part of
the rebuild that a GPU could do stays on the CPU), ``off``, or ``require`` (fail
with :class:`GpuUnavailableError` where ``on`` would warn). What runs where
(docs/gpu.md has the full table):

- IVF indexes: the coarse quantizer's k-means runs on the GPU when there is no kept
  trained state. A bare IVF-Flat, IVF-PQ or IVF-SQ whose inverted lists fit in the
  GPU's free memory is then cloned to the GPU, filled there, and copied back. An
  IVF-Flat that does not fit (or is wrapped) keeps its lists in host memory and only
  assigns vectors to lists on the GPU.
- HNSW over flat storage: the base layer is a CAGRA graph built on the GPU where
  faiss was built with cuVS; the upper layers are inserted on the CPU, and the result
  is a plain ``IndexHNSWFlat``.
- Everything else builds on the CPU.

The finished index is always a CPU index, written exactly like a CPU restore's. The
pure functions here (:func:`parse_mode`, :func:`choose_device`, :func:`plan`, the
sizing helpers) take every input explicitly, so they are tested without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from vecdr.backends import faiss_index as fi
from vecdr.errors import GpuUnavailableError, TargetError, UsageError

MODES = ("auto", "on", "off", "require")

#: Share of a GPU's free memory a rebuild plans to fill. The rest stays for the CUDA
#: context's own growth, allocator rounding and other processes on the device.
USABLE_FRACTION = 0.8

#: Free memory assumed for a device whose free memory cannot be read.
ASSUMED_FREE_BYTES = 4 << 30

#: FAISS scratch memory (``StandardGpuResources.setTempMemory``): a tenth of the free
#: memory within these bounds. Large enough for big query tiles, small next to data.
SCRATCH_MIN_BYTES = 256 << 20
SCRATCH_MAX_BYTES = 2 << 30

#: Fewer rows than this build an HNSW graph on the CPU in well under a second, less
#: than starting a CAGRA build costs.
MIN_GRAPH_ROWS = 4096

#: Inverted lists grow in steps on the GPU; plan for this much above the exact size.
LIST_GROWTH = 1.25

INSTALL_HINT = "pip install 'vecdr[gpu]'"


# -- choices, as pure functions --------------------------------------------------


def parse_mode(value: object) -> str:
    """``auto``, ``on``, ``off`` or ``require`` from a mode name, a bool, or None (auto)."""
    if value is None:
        return "auto"
    if value is True or value is False:
        return "on" if value else "off"
    if isinstance(value, str):
        mode = {"true": "on", "false": "off"}.get(value.strip().lower(), value.strip().lower())
        if mode in MODES:
            return mode
    raise UsageError(f"gpu must be one of {', '.join(MODES)}, not {value!r}")


def parse_device(value: object) -> int | None:
    """A GPU ordinal (as CUDA numbers the visible devices), or None to pick one."""
    if value is None or value == "":
        return None
    try:
        device = int(str(value))
    except ValueError:
        device = -1
    if device < 0:
        raise UsageError(f"gpu_device must be a GPU number (0, 1, …), not {value!r}")
    return device


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One CUDA device as the process sees it; memory in bytes, None where unreadable."""

    index: int
    free: int | None = None
    total: int | None = None


def choose_device(devices: Sequence[GpuDevice], wanted: int | None = None) -> GpuDevice | None:
    """The device to build on: ``wanted``, else the one with the most free memory.

    Devices whose free memory is unknown come after every known one; ties go to the
    lowest number. None when there is no device at all.
    """
    if wanted is not None:
        for device in devices:
            if device.index == wanted:
                return device
        seen = f"GPUs 0…{len(devices) - 1}" if devices else "no GPU"
        raise UsageError(f"there is no GPU {wanted}: faiss sees {seen}")
    if not devices:
        return None
    return max(devices, key=lambda d: (d.free is not None, d.free or 0, -d.index))


def usable_bytes(free: int | None) -> int:
    """The part of ``free`` bytes a rebuild plans to use."""
    return int((ASSUMED_FREE_BYTES if free is None else free) * USABLE_FRACTION)


def scratch_bytes(free: int | None) -> int:
    """FAISS scratch memory to reserve on a device with ``free`` bytes free."""
    tenth = (ASSUMED_FREE_BYTES if free is None else free) // 10
    return int(min(SCRATCH_MAX_BYTES, max(SCRATCH_MIN_BYTES, tenth)))


def ivf_device_bytes(rows: int, dimension: int, nlist: int, code_size: int) -> int:
    """GPU memory an IVF index of ``rows`` vectors holds: lists (codes + int64 ids), centroids."""
    lists = rows * (code_size + 8) * LIST_GROWTH
    centroids = nlist * dimension * 4 * 2  # the quantizer, and its copy in the IVF
    return int(lists + centroids)


def cagra_device_bytes(rows: int, dimension: int, graph_degree: int) -> int:
    """GPU memory a CAGRA build of ``rows`` vectors peaks at, roughly.

    The float32 dataset, the intermediate kNN graph (twice the final degree) and the
    final graph as 64-bit ids, and NN-descent's working set (about two bytes per
    dimension per row).
    """
    dataset = rows * dimension * 4
    graphs = rows * 3 * graph_degree * 8
    ivf_pq = rows * dimension * 2
    return int(dataset + graphs + ivf_pq)


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


@dataclass(frozen=True, slots=True)
class IndexShape:
    """What the planner needs to know about an index, read off the CPU index."""

    name: str
    dimension: int
    family: str  # "ivf", "hnsw", "flat" or "other"
    trains: bool = False  # untrained, and its coarse k-means can run on the GPU
    nlist: int = 0
    code_size: int = 0  # bytes per vector in the inverted lists
    cloneable: bool = False  # a bare IVF-Flat/PQ/SQ that can be held whole on the GPU
    assignable: bool = False  # IVF-Flat: lists can stay in host memory, assignment on the GPU
    graph_degree: int = 0  # HNSW over flat storage: the base layer's degree (2M)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each expensive part of a rebuild runs.

    ``add`` is ``device`` (the index is cloned to the GPU and filled there),
    ``assign`` (lists in host memory, assignment to lists on the GPU), ``graph``
    (CAGRA) or ``cpu``. ``problem`` says what a GPU could have done that stays on the
    CPU, and why; None when nothing does. ``fallback`` says what runs on the CPU
    instead.
    """

    train: bool
    add: str
    problem: str | None
    scratch: int
    #: What happens instead, for the warning: "adding the vectors on the CPU", …
    fallback: str = "rebuilding on the CPU"

    @property
    def uses_gpu(self) -> bool:
        return self.train or self.add != "cpu"


def plan(shape: IndexShape, rows: int, free: int | None, cagra: bool) -> Plan:
    """Decide, from the index's shape, its row count and the device's free memory."""
    scratch = scratch_bytes(free)
    budget = usable_bytes(free) - scratch
    if shape.family == "ivf":
        need = ivf_device_bytes(rows, shape.dimension, shape.nlist, shape.code_size)
        if shape.cloneable and need <= budget:
            return Plan(shape.trains, "device", None, scratch)
        if shape.assignable:
            return Plan(shape.trains, "assign", None, scratch)
        if rows == 0:
            return Plan(shape.trains, "cpu", None, scratch)
        if shape.cloneable:
            problem = (f"the {shape.name}'s inverted lists need about {gib(need)} of GPU memory "
                       f"and {gib(budget)} is usable")
        else:
            problem = f"vecdr has no GPU add path for a {shape.name}"
        return Plan(shape.trains, "cpu", problem, scratch, "adding the vectors on the CPU")
    if shape.family == "hnsw":
        on_cpu = "building the graph on the CPU"
        if rows < MIN_GRAPH_ROWS:
            return Plan(False, "cpu", None, scratch)
        if not shape.graph_degree:
            return Plan(False, "cpu", f"a {shape.name} has no GPU build path (only HNSW over flat "
                        "storage is built through CAGRA)", scratch, on_cpu)
        if not cagra:
            return Plan(False, "cpu", "HNSW graphs are built on the GPU through CAGRA, which this faiss "
                        "lacks (it needs a cuVS build of faiss, such as faiss-gpu-cuvs)", scratch, on_cpu)
        need = cagra_device_bytes(rows, shape.dimension, shape.graph_degree)
        if need > budget:
            return Plan(False, "cpu", f"a CAGRA graph of {rows:,} x {shape.dimension} needs about "
                        f"{gib(need)} of GPU memory and {gib(budget)} is usable", scratch, on_cpu)
        return Plan(False, "graph", None, scratch)
    if shape.family == "flat":
        return Plan(False, "cpu", None, scratch)  # a copy of the vectors: nothing to speed up
    return Plan(False, "cpu", f"a {shape.name} has no GPU build path", scratch)


# -- reading indexes and devices -------------------------------------------------


def index_shape(index: faiss.Index) -> IndexShape:
    """The :class:`IndexShape` of a CPU index (wrapped in an id map or transforms or not)."""
    inner, id_map, _ = fi.unwrap(index)
    name, d = type(inner).__name__, int(inner.d)
    ivf = fi._ivf(inner)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        flat_quantizer = isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat)
        bare = id_map is None and type(inner) is type(ivf)
        kind = type(ivf)
        alone = ivf.quantizer_trains_alone  # a C char: SWIG hands it over as a str
        alone = ord(alone) if isinstance(alone, str) else int(alone)
        return IndexShape(
            name=name, dimension=int(ivf.d), family="ivf",
            trains=not ivf.is_trained and alone in (0, 2),
            nlist=int(ivf.nlist), code_size=int(ivf.code_size),
            cloneable=bare and flat_quantizer and kind in _CLONEABLE,
            assignable=flat_quantizer and kind is faiss.IndexIVFFlat,
        )
    if fi.is_hnsw(inner):
        flat = type(inner) is faiss.IndexHNSWFlat
        degree = int(inner.hnsw.nb_neighbors(0)) if flat else 0
        return IndexShape(name=name, dimension=d, family="hnsw", graph_degree=degree)
    if isinstance(inner, faiss.IndexFlat):
        return IndexShape(name=name, dimension=d, family="flat")
    return IndexShape(name=name, dimension=d, family="other")


_CLONEABLE = (faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexIVFScalarQuantizer)


def gpu_build_problem() -> str | None:
    """Why this faiss cannot build on a GPU, or None when it can."""
    if not hasattr(faiss, "StandardGpuResources"):
        return f"this faiss is a CPU-only build (the gpu extra installs a GPU build: {INSTALL_HINT})"
    return None


def has_cagra() -> bool:
    """Whether this faiss builds CAGRA graphs (a cuVS build)."""
    return hasattr(faiss, "GpuIndexCagra") and hasattr(faiss, "IndexHNSWCagra")


def _cudart() -> Any:
    """The CUDA runtime faiss loaded, through ctypes; None where there is none."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if os.path.basename(path).startswith("libcudart.so"):
                    return ctypes.CDLL(path)
    except OSError:
        pass
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def devices() -> tuple[list[GpuDevice], str | None]:
    """The CUDA devices this process sees, with their free memory; or why there are none.

    Counted through the CUDA runtime's own error codes first: asking faiss for the
    count on a machine without a driver aborts the process instead of raising.
    """
    problem = gpu_build_problem()
    if problem is not None:
        return [], problem
    cudart = _cudart()
    count = ctypes.c_int(0)
    if cudart is not None:
        err = cudart.cudaGetDeviceCount(ctypes.byref(count))
        if err != 0:
            cudart.cudaGetErrorString.restype = ctypes.c_char_p
            why = (cudart.cudaGetErrorString(err) or b"").decode(errors="replace")
            return [], f"CUDA reports no usable GPU ({why or f'error {err}'})"
    else:
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return [], "there is no NVIDIA driver on this machine"
        count.value = int(faiss.get_num_gpus())
    if count.value <= 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return [], "faiss sees no GPU" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    return [GpuDevice(i, *_memory(cudart, i)) for i in range(count.value)], None


def _memory(cudart: Any, device: int) -> tuple[int | None, int | None]:
    if cudart is None:
        return None, None
    free, total, current = ctypes.c_size_t(0), ctypes.c_size_t(0), ctypes.c_int(0)
    if cudart.cudaGetDevice(ctypes.byref(current)) != 0:
        return None, None
    try:
        if cudart.cudaSetDevice(device) != 0 or cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != 0:
            return None, None
    finally:
        cudart.cudaSetDevice(current.value)
    return int(free.value), int(total.value)


# -- from a mode to a build ------------------------------------------------------


def refuse_or_warn(mode: str, problem: str, fallback: str, warn: Callable[[str], None]) -> None:
    """What each mode does when the GPU cannot take (part of) a rebuild.

    ``require`` raises; ``on`` warns ("PROBLEM; FALLBACK"); ``auto`` says nothing.
    """
    if mode == "require":
        raise GpuUnavailableError(f"a GPU rebuild was required, but {problem}")
    if mode == "on":
        warn(f"{problem}; {fallback}")


def require(device: int | None = None) -> GpuDevice:
    """The device a ``require`` restore will use; raises :class:`GpuUnavailableError` if none."""
    found, problem = devices()
    if problem is not None:
        raise GpuUnavailableError(f"a GPU rebuild was required, but {problem}")
    chosen = choose_device(found, device)
    assert chosen is not None
    return chosen


def prepare(
    index: faiss.Index,
    rows: int,
    mode: str,
    device: int | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> GpuBuild | None:
    """The GPU build of a fresh ``index`` that will hold ``rows`` vectors, or None for the CPU.

    ``on`` warns once and ``require`` raises where a GPU could do part of the work
    and will not; ``auto`` stays quiet.
    """
    if mode == "off":
        return None
    shape = index_shape(index)
    if shape.family == "flat" or rows == 0:
        return None  # nothing worth a GPU; no device is even opened
    found, problem = devices()
    if problem is not None:
        refuse_or_warn(mode, problem, "rebuilding on the CPU", warn)
        return None
    chosen = choose_device(found, device)
    assert chosen is not None
    decided = plan(shape, rows, chosen.free, has_cagra())
    if decided.problem is not None:
        refuse_or_warn(mode, decided.problem, decided.fallback, warn)
    if not decided.uses_gpu:
        return None
    try:
        return GpuBuild(decided, chosen, shape, rows, mode, warn)
    except RuntimeError as exc:
        refuse_or_warn(mode, f"GPU {chosen.index} cannot be opened ({_last_line(exc)})",
                       "rebuilding on the CPU", warn)
        return None


def _last_line(exc: BaseException) -> str:
    """The informative line of a FAISS exception (its last), kept short."""
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:200]


# -- moving graphs and ids between indexes (CPU objects; tested without a GPU) -----


def adopt_hnsw(target: faiss.Index, donor: faiss.Index) -> None:
    """Move ``donor``'s graph and vectors into the empty ``IndexHNSWFlat`` ``target``.

    ``donor`` is an ``IndexHNSWCagra`` (the same HNSW structure over flat storage).
    The vectors change owner instead of being copied; ``target`` keeps its own search
    parameters. ``donor`` is left with ``target``'s empty storage and can be discarded.
    """
    target = faiss.downcast_index(target)
    if target.ntotal or not (target.own_fields and donor.own_fields):
        raise TargetError("the index to fill with a GPU-built graph must be empty and own its storage")
    ef_search, ef_construction = target.hnsw.efSearch, target.hnsw.efConstruction
    bounded = target.hnsw.search_bounded_queue
    target.hnsw = donor.hnsw  # a copy of the graph: levels, offsets, neighbours, entry point
    target.hnsw.efSearch, target.hnsw.efConstruction = ef_search, ef_construction
    target.hnsw.search_bounded_queue = bounded
    # The two indexes swap storages: each still owns (and frees) exactly one, and no
    # Python proxy changes ownership, which SWIG does not track safely.
    storage, replaced = donor.storage, target.storage
    target.storage, donor.storage = storage, replaced
    target.ntotal = donor.ntotal


def fill_id_map(index: faiss.Index, ids: np.ndarray) -> None:
    """Give an ``IndexIDMap``/``IndexIDMap2`` whose inner index was filled directly its ids."""
    wrapper = faiss.downcast_index(index)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if wrapper.index.ntotal != len(ids) or wrapper.ntotal:
        raise TargetError(f"{len(ids)} ids for an id map over {wrapper.index.ntotal} vectors")
    faiss.copy_array_to_vector(ids, wrapper.id_map)
    wrapper.ntotal = len(ids)
    if isinstance(wrapper, faiss.IndexIDMap2):
        wrapper.construct_rev_map()


# -- the GPU side ----------------------------------------------------------------


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration.

    cuVS logs at info level straight to the process's stderr ("MST optimization is
    used…"), with no setting to turn it off; the CLI promises one line per warning or
    error there. Errors still arrive, as the exceptions FAISS raises.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)



class GpuBuild:
    """One rebuild's GPU work: resources on one device, and the index moved there and back.

    The target calls :meth:`train`, :meth:`to_device` once the index is trained,
    :meth:`to_host` after the last add, and :meth:`build_graph` for HNSW. A GPU
    failure at any of these steps (out of memory, an unsupported layout) warns or
    raises as the mode says, and the step runs on the CPU instead.
    """

    def __init__(self, plan: Plan, device: GpuDevice, shape: IndexShape, rows: int, mode: str,
                 warn: Callable[[str], None]) -> None:
        self.plan, self.device, self.shape, self.rows, self.mode = plan, device, shape, rows, mode
        self._warn = warn
        self.res = faiss.StandardGpuResources()
        self.res.setTempMemory(plan.scratch)
        self._device_index: Any = None  # the clone being filled on the GPU
        self._swap: tuple[Any, Any, bool] | None = None  # (ivf, its CPU quantizer, own_fields)
        self._gpu_quantizer: Any = None  # alive while installed in the CPU index

    @property
    def builds_graph(self) -> bool:
        return self.plan.add == "graph"

    def _failed(self, step: str, exc: BaseException, fallback: str) -> None:
        refuse_or_warn(self.mode, f"the GPU failed to {step} ({_last_line(exc)})", fallback, self._warn)

    def _flat(self, dimension: int, metric: int) -> Any:
        config = faiss.GpuIndexFlatConfig()
        config.device = self.device.index
        return faiss.GpuIndexFlat(self.res, dimension, metric, config)

    def train(self, index: faiss.Index, x: np.ndarray) -> None:
        """Train ``index`` with the coarse quantizer's k-means assigning on the GPU."""
        if not self.plan.train:
            index.train(x)
            return
        ivf = faiss.downcast_index(fi._ivf(fi.unwrap(index)[0]))
        # Clustering assigns through this index, in one call per iteration (FAISS pages
        # the sample through GPU memory); the CPU quantizer then receives the centroids.
        assigner = self._flat(int(ivf.d), int(ivf.quantizer.metric_type))  # alive while installed
        ivf.clustering_index = assigner
        try:
            index.train(x)
        except RuntimeError as exc:
            ivf.clustering_index = None
            self._failed("train the coarse quantizer", exc, "training on the CPU")
            index.train(x)
        finally:
            ivf.clustering_index = None
            del assigner

    def to_device(self, index: faiss.Index) -> faiss.Index:
        """The index the adds should go to: a GPU clone, or ``index`` with a GPU quantizer."""
        if self.plan.add == "device":
            options = faiss.GpuClonerOptions()
            options.indicesOptions = faiss.INDICES_64_BIT
            options.reserveVecs = self.rows  # every list allocated once, for the whole snapshot
            options.useFloat16 = False
            if hasattr(options, "use_cuvs"):
                options.use_cuvs = False  # FAISS's own IVF kernels: the layout the CPU index has
            try:
                self._device_index = faiss.index_cpu_to_gpu(self.res, self.device.index, index, options)
                return self._device_index
            except RuntimeError as exc:
                if not self.shape.assignable:
                    self._failed("hold the index", exc, "adding the vectors on the CPU")
                    return index
        if self.plan.add in ("device", "assign"):
            self._attach_quantizer(index)
        return index

    def to_host(self, index: faiss.Index) -> faiss.Index:
        """The finished CPU index, after the last add."""
        if self._device_index is not None and index is self._device_index:
            cpu = faiss.index_gpu_to_cpu(index)
            self._device_index = None
            return cpu
        self._detach_quantizer()
        return index

    def _attach_quantizer(self, index: faiss.Index) -> None:
        ivf = faiss.downcast_index(fi._ivf(fi.unwrap(index)[0]))
        cpu_quantizer = faiss.downcast_index(ivf.quantizer)
        try:
            gpu_quantizer = faiss.index_cpu_to_gpu(self.res, self.device.index, cpu_quantizer)
        except RuntimeError as exc:
            self._failed("hold the coarse quantizer", exc, "adding the vectors on the CPU")
            return
        # While the GPU quantizer is installed the IVF deletes neither quantizer: the GPU
        # one belongs to this object, and the CPU one goes back in at to_host. (A restore
        # abandoned in between leaks the CPU quantizer's centroids rather than risk a
        # double free.)
        owned = bool(ivf.own_fields)
        ivf.own_fields = False
        ivf.quantizer = gpu_quantizer
        self._swap, self._gpu_quantizer = (ivf, cpu_quantizer, owned), gpu_quantizer

    def _detach_quantizer(self) -> None:
        if self._swap is None:
            return
        ivf, cpu_quantizer, owned = self._swap
        ivf.quantizer = cpu_quantizer
        ivf.own_fields = owned
        self._swap = self._gpu_quantizer = None

    def build_graph(self, index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, plain: bool) -> bool:
        """Fill an empty HNSW index (in an id map unless ``plain``) through CAGRA.

        False when the GPU build failed and the caller should build on the CPU.
        """
        inner = faiss.downcast_index(fi.unwrap(index)[0])
        try:
            donor = self._cagra_graph(inner, np.ascontiguousarray(vectors, dtype=np.float32))
        except RuntimeError as exc:
            self._failed("build the CAGRA graph", exc, "building it on the CPU")
            return False
        adopt_hnsw(inner, donor)
        del donor
        if not plain:
            fill_id_map(index, ids)
        return True

    def _cagra_graph(self, inner: faiss.Index, vectors: np.ndarray) -> Any:
        degree = int(inner.hnsw.nb_neighbors(0))
        config = faiss.GpuIndexCagraConfig()
        config.device = self.device.index
        config.graph_degree = degree
        config.intermediate_graph_degree = 2 * degree
        # NN-descent with a connectivity pass: with the default IVF-PQ kNN build, an
        # HNSW search over the graph lost a third of its recall on clustered data.
        config.build_algo = faiss.graph_build_algo_NN_DESCENT
        config.guarantee_connectivity = True
        graph = faiss.GpuIndexCagra(self.res, int(inner.d), int(inner.metric_type), config)
        with _native_stderr_silenced():
            graph.train(vectors)
        # The base layer comes from CAGRA; the upper layers are inserted on the CPU with
        # the index's own efConstruction, as an HNSW build would insert them.
        donor = faiss.IndexHNSWCagra(int(inner.d), degree // 2, int(inner.metric_type))
        donor.base_level_only = False
        donor.hnsw.efConstruction = inner.hnsw.efConstruction
        graph.copyTo(donor)
        del graph
        return donor
