"""The documentation site builds in strict mode, and its CLI reference covers the CLI.

Strict mode fails the build on a broken link or anchor, a page missing from the
nav, or a nav entry without a page, so this one build checks every page of docs/.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (it comes with the `docs` and `dev` extras)")
pytest.importorskip("material", reason="mkdocs-material is not installed (it comes with the `docs` and `dev` extras)")

import typer.main  # noqa: E402

from vecdr.cli.main import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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
