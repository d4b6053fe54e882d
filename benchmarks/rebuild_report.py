"""Plots and the Markdown summary of the rebuild sweep (``benchmarks/rebuild.py``), from its results document.

Kept apart from the measuring code so the report can be redrawn from a results
file (``python -m benchmarks rebuild --replot``) without measuring again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INDEX_ORDER = ("flat", "hnsw", "ivf_flat", "ivf_pq")
BACKEND_ORDER = ("faiss", "pgvector", "milvus")
BACKEND_NAMES = {"faiss": "FAISS", "pgvector": "pgvector", "milvus": "Milvus"}
INDEX_NAMES = {"flat": "Flat", "hnsw": "HNSW", "ivf_flat": "IVF-Flat", "ivf_pq": "IVF-PQ"}
COLORS = {"faiss": "tab:blue", "pgvector": "tab:green", "milvus": "tab:red"}
#: Each backend's rebuild without vecdr, as the plots and tables name it.
BUILD_NAMES = {"faiss": "bare build (train + add)", "pgvector": "COPY + CREATE INDEX",
               "milvus": "naive insert + index"}

VS_N = "rebuild-vs-n.png"
PHASES = "rebuild-phases.png"
RATIOS = "rebuild-ratios.png"
MARKDOWN = "rebuild.md"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple[int, int, int, int]:
        return (BACKEND_ORDER.index(r["backend"]), INDEX_ORDER.index(r["index"]), r["dim"], r["rows"])

    return sorted(doc["summary"], key=key)


def _count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value < 0.1 else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def plot_vs_n(doc: dict[str, Any], path: Path) -> None:
    """Rebuild seconds against N, one panel per index type (and dimension), log-log."""
    plt = _pyplot()
    rows = _rows(doc)
    indexes = [i for i in INDEX_ORDER if any(r["index"] == i for r in rows)]
    dims = sorted({r["dim"] for r in rows})
    fig, axes = plt.subplots(len(dims), len(indexes), figsize=(4.2 * len(indexes), 3.8 * len(dims)),
                             squeeze=False, sharex=True)
    lines = (  # (summary field, label, line style, marker)
        ("vecdr_local_seconds", "vecdr restore, local repository", "-", "o"),
        ("vecdr_s3_seconds", "vecdr restore, S3 repository", "--", "s"),
        ("build_seconds", "{build}", ":", "x"),
        ("pg_restore_seconds", "pg_restore", "-.", "^"),
        ("read_index_seconds", "faiss.read_index (no rebuild)", "-.", "v"),
    )
    for di, d in enumerate(dims):
        for ii, index in enumerate(indexes):
            ax = axes[di][ii]
            for backend in BACKEND_ORDER:
                mine = sorted((r for r in rows if (r["backend"], r["index"], r["dim"]) == (backend, index, d)),
                              key=lambda r: r["rows"])
                for field, label, style, marker in lines:
                    points = [(r["rows"], r[field]) for r in mine if r.get(field)]
                    if not points:
                        continue
                    name = label.format(build=BUILD_NAMES[backend])
                    ax.plot(*zip(*points, strict=True), style, marker=marker, color=COLORS[backend],
                            label=f"{BACKEND_NAMES[backend]}: {name}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{INDEX_NAMES[index]}, d={d}")
            ax.set_xlabel("rows (N)")
            ax.grid(True, which="both", alpha=0.3)
            if ii == 0:
                ax.set_ylabel("seconds")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.suptitle("Rebuild (restore) seconds against N, per index type")
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize="small", frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _best_run(case: dict[str, Any], store: str) -> dict[str, Any]:
    runs = case["restores"][store]["runs"]
    return min(runs, key=lambda r: r["seconds"])


def plot_phases(doc: dict[str, Any], path: Path) -> None:
    """Each restore's wall time split into its phases, as shares of the whole (the seconds at the bar's end)."""
    plt = _pyplot()
    cases = sorted(doc["cases"]["runs"], key=lambda c: (BACKEND_ORDER.index(c["backend"]),
                                                         INDEX_ORDER.index(c["index"]), c["dim"], c["rows"]))
    bars = [(c, store, _best_run(c, store)) for c in cases for store in c["restores"]]
    parts: list[str] = []
    for _, _, run in bars:
        parts += [p for p in run["breakdown"] if p not in parts]
    cmap = plt.get_cmap("tab20")
    colors = {p: cmap(i % 20) for i, p in enumerate(parts)}
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * len(bars)))
    labels = []
    for y, (case, store, run) in enumerate(bars):
        left = 0.0
        total = sum(run["breakdown"].values()) or 1.0
        for part in parts:
            width = run["breakdown"].get(part, 0.0) / total
            if width:
                ax.barh(y, width, left=left, color=colors[part], label=part)
                left += width
        ax.text(1.01, y, f"{run['seconds']:.2f} s", va="center", fontsize="small")
        labels.append(f"{BACKEND_NAMES[case['backend']]} {INDEX_NAMES[case['index']]} "
                      f"{_count(case['rows'])}x{case['dim']}, {store}")
    ax.set_yticks(range(len(bars)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the restore's wall time (best run); its seconds on the right")
    handles: dict[str, Any] = {}
    for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
        handles.setdefault(label, h)
    ax.set_title("Where each restore's time goes")
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5,
               fontsize="small", frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _ratio_bars(row: dict[str, Any]) -> list[tuple[str, float]]:
    """(kind, ratio) for one case; the kinds are the same for every backend, so are their colours."""
    r = row["ratios"]
    out = [("vecdr local / own build", r.get("local/build")),
           ("vecdr S3 / own build", r.get("s3/build")),
           ("vecdr local / pg_restore", r.get("local/pg_restore")),
           ("vecdr local / faiss.read_index", r.get("local/read_index"))]
    return [(label, value) for label, value in out if value is not None]


def plot_ratios(doc: dict[str, Any], path: Path) -> None:
    """vecdr's best restore over each baseline's best, per case, on a log axis (below 1: vecdr is faster)."""
    plt = _pyplot()
    rows = _rows(doc)
    kinds: list[str] = []
    for row in rows:
        kinds += [k for k, _ in _ratio_bars(row) if k not in kinds]
    cmap = plt.get_cmap("tab10")
    colors = {k: cmap(i % 10) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.42 * len(rows)))
    height = 0.8 / max(1, max((len(_ratio_bars(r)) for r in rows), default=1))
    for y, row in enumerate(rows):
        for k, (label, value) in enumerate(_ratio_bars(row)):
            ax.barh(y - 0.4 + height * (k + 0.5), value, height=height, color=colors[label], label=label)
            ax.text(value * 1.04, y - 0.4 + height * (k + 0.5), _ratio(value), va="center", fontsize="x-small")
    ax.set_yticks(range(len(rows)), [f"{BACKEND_NAMES[r['backend']]} {INDEX_NAMES[r['index']]} "
                                     f"{_count(r['rows'])}x{r['dim']}" for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("vecdr restore seconds / baseline seconds (best of each; below 1: vecdr is faster)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    handles: dict[str, Any] = {}
    for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
        handles.setdefault(label, h)
    ax.set_title("vecdr restore against each baseline")
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               fontsize="small", frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    load0 = ", ".join(f"{v:.2f}" for v in m.get("loadavg_start", []))
    load1 = ", ".join(f"{v:.2f}" for v in m.get("loadavg_end", []))
    commit = (m.get("git_commit") or "?")[:10]
    dirty = len(m.get("src_uncommitted_changes") or [])
    changed = " **src/ changed while it ran** (see `machine.src_changed_during_run`)." if m.get(
        "src_changed_during_run") else ""
    return (f"Measured {doc['started_at']} to {doc['finished_at']} ({doc['wall_seconds'] / 60:.0f} min) on "
            f"{m.get('cpu_model', 'an unknown CPU')}, {m.get('cpus_usable', m.get('cpu_count'))} usable cores, "
            f"{m.get('mem_total_gib', '?')} GiB; load average (1, 5, 15 min) {load0} at the start and {load1} at "
            f"the end: the machine is shared, so other work competed for the cores. vecdr at commit `{commit}` "
            f"with {dirty} uncommitted file(s) under src/; faiss {m.get('faiss')} ({m.get('faiss_omp_threads')} "
            f"OpenMP threads), numpy {m.get('numpy')}, pyarrow {m.get('pyarrow')}.{changed}")


def _table(rows: list[dict[str, Any]], backend: str) -> list[str]:
    mine = [r for r in rows if r["backend"] == backend]
    if not mine:
        return []
    build = BUILD_NAMES[backend]
    head = ["N", "d", "index", "vecdr local", "vecdr S3", build]
    if backend == "faiss":
        head += ["write_index", "read_index", "local / build", "S3 / build", "local / read_index"]
    elif backend == "pgvector":
        head += ["pg_dump", "pg_restore", "local / build", "S3 / build", "local / pg_restore"]
    else:
        head += ["local / naive", "S3 / naive"]
    out = [f"### {BACKEND_NAMES[backend]}", "", "| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i < 3 else "--:" for i in range(len(head))) + "|"]
    for r in mine:
        ratio = r["ratios"]
        cells = [f"{r['rows']:,}", str(r["dim"]), f"`{r['spec']}`", _seconds(r["vecdr_local_seconds"]),
                 _seconds(r["vecdr_s3_seconds"]), _seconds(r["build_seconds"])]
        if backend == "faiss":
            cells += [_seconds(r["write_index_seconds"]), _seconds(r["read_index_seconds"]),
                      _ratio(ratio.get("local/build")), _ratio(ratio.get("s3/build")),
                      _ratio(ratio.get("local/read_index"))]
        elif backend == "pgvector":
            cells += [_seconds(r["pg_dump_seconds"]), _seconds(r["pg_restore_seconds"]),
                      _ratio(ratio.get("local/build")), _ratio(ratio.get("s3/build")),
                      _ratio(ratio.get("local/pg_restore"))]
        else:
            cells += [_ratio(ratio.get("local/build")), _ratio(ratio.get("s3/build"))]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def _phase_table(doc: dict[str, Any]) -> list[str]:
    """The largest part of each restore (best run), from the local repository and from S3."""
    out = ["| backend | index | N | repository | seconds | largest part | its share | read (waited) |",
           "|---|---|--:|---|--:|---|--:|--:|"]
    cases = sorted(doc["cases"]["runs"], key=lambda c: (BACKEND_ORDER.index(c["backend"]),
                                                         INDEX_ORDER.index(c["index"]), c["dim"], c["rows"]))
    for c in cases:
        for store in c["restores"]:
            run = _best_run(c, store)
            parts = run["breakdown"]
            total = sum(parts.values()) or 1.0
            top = max(parts, key=parts.__getitem__)
            out.append(f"| {BACKEND_NAMES[c['backend']]} | {INDEX_NAMES[c['index']]} | {c['rows']:,} | {store} | "
                       f"{_seconds(run['seconds'])} | {top} | {parts[top] / total:.0%} | "
                       f"{_seconds(parts.get('read (waited)', 0.0))} |")
    return out


def markdown(doc: dict[str, Any]) -> str:
    rows = _rows(doc)
    cfg = doc["config"]
    lines = [
        "# Rebuild time: vecdr restores against rebuilding by hand",
        "",
        "Generated by `python -m benchmarks rebuild` (benchmarks/rebuild.py) from "
        "`rebuild.json` beside this file; every figure below is in it, with every sample.",
        "",
        _machine_line(doc),
        "",
        f"Command: `{doc['command']}`. Rows: {', '.join(f'{n:,}' for n in cfg['rows'])}; dimensions: "
        f"{', '.join(map(str, cfg['dims']))}; repeats: {cfg['repeats']} (best kept). Data: {cfg['data']}.",
        "",
        "## What is measured",
        "",
        "For every N, dimension, index type and backend, the source is built once, snapshotted once into a "
        "local repository and once into an S3 repository (moto's S3 server on the same machine), and restored "
        "from each: the wall time of `vecdr.restore` from opening the repository to a published, counted "
        "target. The baselines run in the same process, on the same vectors, alternating with the restores:",
        "",
        "- **FAISS**: the bare build (`index_factory`, `train`, `add` from numpy, in memory) against a restore "
        "into an in-memory index; `faiss.write_index` (+ fsync) and `faiss.read_index` of the built index are "
        "the native-file alternative, which has no portability across versions or engines. IVF restores reuse "
        "the trained state (centroids, codebooks) kept with the snapshot and only add.",
        "- **pgvector**: the table loaded by binary COPY with its index built after, and `pg_dump -Fc` / "
        "`pg_restore` into a new database; both with the index-build settings vecdr's restore uses (1GB "
        "`maintenance_work_mem`, one parallel worker), so the comparison is of formats and loading, not memory. "
        "Every restored table is checked against the source (rows, id sum, each vector's text hash, index "
        "definitions).",
        "- **Milvus**: Milvus Lite served in its own process, reached over gRPC; the baseline is the naive "
        "restore (rows converted with `.tolist()`, inserted 1,000 at a time, flush, the same index, load).",
        "",
        "Ratios are vecdr's best restore over the baseline's best: below 1, vecdr is the faster. "
        "A restore is checked to hold exactly N rows. The machine is small and shared: compare ratios "
        "measured in the same run, not seconds across runs.",
        "",
        "## Results (seconds, best of the repeats)",
        "",
    ]
    for backend in BACKEND_ORDER:
        lines += _table(rows, backend)
    skipped = doc["cases"].get("skipped") or []
    if skipped:
        reasons: dict[str, list[str]] = {}
        for s in skipped:
            reasons.setdefault(s["reason"], []).append(f"{s['backend']} {s['index']} {_count(s['rows'])}x{s['dim']}")
        lines += ["Not measured:", ""] + [f"- {', '.join(v)}: {k}" for k, v in reasons.items()] + [""]
    failed = doc["cases"].get("failed") or []
    if failed:
        lines += ["**Failed** (see `cases.failed` in rebuild.json for the traceback):", ""]
        lines += [f"- {f['backend']} {f['index']} {_count(f['rows'])}x{f['dim']}: `{f['error']}`" for f in failed]
        lines += [""]
    lines += [
        "## Figures",
        "",
        f"![Rebuild seconds against N]({VS_N})",
        "",
        "**Rebuild seconds against N**, one panel per index type, log-log. Solid: vecdr from a local "
        "repository; dashed: from S3; dotted: each backend's own rebuild without vecdr (FAISS bare build, "
        "pgvector COPY + CREATE INDEX, Milvus naive insert + index); dash-dot: `pg_restore` and "
        "`faiss.read_index` (loading a native file, no rebuild). Colour is the backend.",
        "",
        f"![Restore phases]({PHASES})",
        "",
        "**Where each restore's time goes** (best run), as shares of its wall time, which is printed at the "
        "right. `read (waited)`: waiting for segments to be fetched, hash-checked and decoded; `rows in`: the "
        "target taking the rows (FAISS adds as rows stream in for Flat and IVF; binary COPY into PostgreSQL; "
        "Milvus insert requests converted and sent); `train`: sampling and training when no trained state was "
        "kept; `build` (FAISS): the add at the end (an HNSW graph is built there, from all rows at once); "
        "`index`, `primary_key`, `flush`, `load`, `count`, `publish`: the backend's own steps after the rows "
        "are in; `open, other`: opening the repository and snapshot, creating the target, the rest.",
        "",
        f"![vecdr against the baselines]({RATIOS})",
        "",
        "**vecdr against each baseline**: the best restore over the best baseline, log axis, the line at 1 "
        "marks parity. *Own build* is each backend's rebuild without vecdr (FAISS bare build, pgvector "
        "COPY + CREATE INDEX, Milvus naive insert + index). Against `faiss.read_index` a rebuild is always "
        "slower (it builds what the file stores): that ratio is what rebuilding costs over loading a native "
        "file, which only the same FAISS version can read.",
        "",
        "## The largest part of each restore",
        "",
        *_phase_table(doc),
        "",
    ]
    return "\n".join(lines)


def write_report(doc: dict[str, Any], out: Path) -> list[Path]:
    """Draw the three plots and write the Markdown summary into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    if not doc.get("summary"):
        return []
    paths = [out / VS_N, out / PHASES, out / RATIOS, out / MARKDOWN]
    plot_vs_n(doc, paths[0])
    plot_phases(doc, paths[1])
    plot_ratios(doc, paths[2])
    paths[3].write_text(markdown(doc))
    return paths
