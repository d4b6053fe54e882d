"""The documentation site builds in strict mode, and its CLI reference covers the CLI.

Strict mode fails the build on a broken link or anchor, a page missing from the
nav, or a nav entry without a page, so this one build checks every page of docs/.
The Markdown is also read where it lies (a repository browser, an editor): there,
every relative link must name a file that is committed, and the committed CLI
reference must be the one the CLI generates now.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from vecdr.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"\]\(([^)\s]+)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def relative_links(page: Path) -> list[tuple[int, str]]:
    """``(line, link)`` of each relative Markdown link of ``page``, outside code."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for text in line.split("`")[0::2]:  # outside inline code
            for link in _LINK.findall(text):
                if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I) and not link.startswith("#"):
                    found.append((number, link))
    return found


def test_every_relative_link_names_a_committed_file() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    links = [(page, number, link) for page in pages for number, link in relative_links(page)]
    assert any(link.startswith("reference/cli.md") for _, _, link in links)  # the link that used to break
    dead = [f"{page.relative_to(ROOT)}:{number}: {link}" for page, number, link in links
            if link.split("#")[0] and not (page.parent / link.split("#")[0]).is_file()]
    assert not dead, f"links to files that are not in the repository: {dead}"


def test_the_committed_cli_reference_matches_the_cli() -> None:
    spec = importlib.util.spec_from_file_location("vecdr_docs_gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    committed = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert committed == gen_cli.render(), (
        "docs/reference/cli.md is stale: run `python docs/gen_cli.py docs/reference/cli.md`"
    )


def cli_commands() -> list[tuple[str, ...]]:
    """Every command of ``vecdr``, read from the click command tree (groups included)."""
    found: list[tuple[str, ...]] = []

    def visit(command: Any, path: tuple[str, ...], parent: Any) -> None:
        ctx = command.context_class(command, info_name=path[-1], parent=parent)
        if not hasattr(command, "list_commands"):
            return
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                found.append((*path, name))
                visit(sub, (*path, name), ctx)

    visit(typer.main.get_command(app), ("vecdr",), None)
    return found


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built in this process (vecdr is imported already) as `make docs` builds it."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (it comes with the `docs` and `dev` extras)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (the `docs` and `dev` extras)")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    out = tmp_path_factory.mktemp("site")
    messages = _Messages()
    logger = logging.getLogger("mkdocs")
    logger.addHandler(messages)
    try:
        build(load_config(config_file=str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True))
    except MkDocsException as exc:
        pytest.fail("mkdocs build --strict failed: " + "\n".join([str(exc), *messages.lines]))
    finally:
        logger.removeHandler(messages)
    return out


def test_the_cli_reference_lists_every_command(site: Path) -> None:
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'<h[2-4] id="([^"]+)"', page))
    commands = cli_commands()
    assert len(commands) >= 10, commands
    missing = [" ".join(path) for path in commands if "-".join(path).lower() not in ids]
    assert not missing, f"commands without a section in the CLI reference: {missing}"


def test_every_option_of_every_command_is_listed(site: Path) -> None:
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    snapshot = root.get_command(root.context_class(root, info_name="vecdr"), "snapshot")
    ctx = snapshot.context_class(snapshot, info_name="snapshot")
    options = [opt for param in snapshot.get_params(ctx) if param.param_type_name == "option" for opt in param.opts]
    assert "--mode" in options
    section = page.split('id="vecdr-snapshot"', 1)[1].split("<h2", 1)[0]
    for opt in options:
        if opt != "--help":
            assert f"<code>{opt}</code>" in section, opt


def test_the_benchmarks_page_holds_the_harness_readme_and_every_results_summary(site: Path) -> None:
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "benchmarks.html").read_text(encoding="utf-8")))
    assert "vecdr benchmarks" in page
    for summary in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        first_heading = next(
            (line.lstrip("#").strip() for line in summary.read_text(encoding="utf-8").splitlines()
             if line.startswith("#")),
            None,
        )
        if first_heading:
            assert re.sub(r"[`*]", "", first_heading) in page, summary.name


def test_the_reference_links_to_the_handwritten_conventions(site: Path) -> None:
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    article = page.split("<article", 1)[1].split("</article>", 1)[0]  # the page's own text, not the navigation
    assert 'href="../cli.html"' in article


def test_the_conventions_link_to_the_generated_reference(site: Path) -> None:
    page = (site / "cli.html").read_text(encoding="utf-8")
    article = page.split("<article", 1)[1].split("</article>", 1)[0]
    assert 'href="reference/cli.html"' in article
