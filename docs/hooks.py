"""MkDocs hooks: the pages that are made from something else at build time.

- ``reference/cli.md``: the CLI reference, from the ``vecdr`` command tree
  (``docs/gen_cli.py``). A copy is committed so that links to it work outside the
  site too; the build replaces it with what the CLI says now.
- ``benchmarks.md``: ``benchmarks/README.md`` followed by every results summary
  ``benchmarks/results/*.md`` present at build time. Their relative links are
  rewritten for the site: a link to a page of ``docs/`` points at that page, a
  link to a file under ``benchmarks/results/`` (a plot, a results JSON) ships
  that file with the site, and any other link becomes plain text.

Neither is written into ``docs/`` by the build.

Headings get the ids GitHub gives them, so a link such as
``format.md#manifests-manifestssnapshotjson`` works on the site and when the
Markdown is read in the repository.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"

CLI_PAGE = "reference/cli.md"
BENCHMARKS_PAGE = "benchmarks.md"

_LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
_REFERENCE = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*)(\S+)(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})(\s)")


def github_slug(text: str, separator: str = "-") -> str:
    """GitHub's heading id: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", separator)


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("vecdr_docs_gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Linker:
    """Rewrites the relative links of one Markdown file for ``benchmarks.md``."""

    def __init__(self, source: Path, assets: dict[str, Path]) -> None:
        self.folder = source.parent
        self.assets = assets

    def target(self, link: str) -> str | None:
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I) or link.startswith(("#", "/")):
            return link
        path_part, _, fragment = link.partition("#")
        path = (self.folder / path_part).resolve()
        fragment = f"#{fragment}" if fragment else ""
        if path.suffix == ".md" and path.parent == DOCS and path.is_file():
            return path.name + fragment
        if path.is_file() and path.is_relative_to(RESULTS) and path.suffix != ".md":
            uri = path.relative_to(ROOT).as_posix()
            self.assets[uri] = path
            return uri
        return None

    def inline(self, match: re.Match[str]) -> str:
        label, link, title = match.groups()
        target = self.target(link)
        if target is not None:
            return f"{label}({target}{title})"
        text = label.lstrip("!")[1:-1]
        return f"{text} (`{link}`)" if text and text != link else f"`{link}`"

    def line(self, line: str) -> str:
        reference = _REFERENCE.match(line)
        if reference:
            target = self.target(reference.group(2))
            return line if target is None else f"{reference.group(1)}{target}{reference.group(3)}"
        parts = line.split("`")
        for i in range(0, len(parts), 2):  # outside inline code
            parts[i] = _LINK.sub(self.inline, parts[i])
        return "`".join(parts)


def _adapt(source: Path, assets: dict[str, Path], shift: int) -> str:
    """``source``'s Markdown with its links rewritten and its headings ``shift`` levels lower."""
    linker = _Linker(source, assets)
    out, fenced = [], False
    for line in source.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = linker.line(line)
            if shift:
                line = _HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + shift) + m.group(2), line)
        out.append(line)
    return "\n".join(out) + "\n"


def benchmarks_page(assets: dict[str, Path]) -> str:
    """The benchmarks page: the harness's README, then each results summary."""
    text = _adapt(BENCHMARKS / "README.md", assets, shift=0)
    summaries = sorted(RESULTS.glob("*.md"))
    if summaries:
        text += "\n## Results summaries\n\n"
        text += "\n".join(_adapt(summary, assets, shift=2) for summary in summaries)
    return text


def on_config(config: Any) -> Any:
    config.mdx_configs.setdefault("toc", {})["slugify"] = github_slug
    return config


def on_files(files: Files, config: Any) -> Files:
    committed = files.get_file_from_path(CLI_PAGE)
    if committed is not None:
        files.remove(committed)
    files.append(File.generated(config, CLI_PAGE, content=_gen_cli().render()))
    assets: dict[str, Path] = {}
    files.append(File.generated(config, BENCHMARKS_PAGE, content=benchmarks_page(assets)))
    for uri, path in sorted(assets.items()):
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
