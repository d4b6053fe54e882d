"""``vecdr pgvector …``: what only PostgreSQL sources need."""

from __future__ import annotations

from typing import Annotated

import typer

from vecdr.cli import output

app = typer.Typer(
    name="pgvector", help="PostgreSQL tables: change tracking for incremental snapshots.", no_args_is_help=True
)
Uri = Annotated[str, typer.Argument(help="postgresql://user@host:port/db?table=NAME")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("enable-tracking")
def enable_tracking_cmd(uri: Uri, as_json: Json = False) -> None:
    """Install a change log and triggers so snapshots read only changed rows."""
    from vecdr.backends.pgvector import enable_tracking

    log = enable_tracking(uri)
    if as_json:
        output.emit_json({"tracking": True, "log": log})
    else:
        print(f"tracking changes in {output.shown(log)}; "
              "the next snapshot is a full comparison, later ones read the log")


@app.command("disable-tracking")
def disable_tracking_cmd(uri: Uri, as_json: Json = False) -> None:
    """Remove the change log and triggers."""
    from vecdr.backends.pgvector import disable_tracking

    disable_tracking(uri)
    if as_json:
        output.emit_json({"tracking": False})
    else:
        print("change tracking removed")
