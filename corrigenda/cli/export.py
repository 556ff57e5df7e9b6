"""``corrigenda export create|list|download|stream``: dataset versions from the command line.

They talk to a running server with a project's secret key, like the Python client:
``--url`` / ``CORRIGENDA_URL`` and ``--key`` / ``CORRIGENDA_API_KEY``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from ..client import ApiError, Client
from ..client.datasets import DownloadError
from ..datasets.formats import FORMATS


def register(main: click.Group) -> None:
    main.add_command(export)


def _client(ctx: click.Context) -> Client:
    return Client(ctx.obj["url"], ctx.obj["key"])


@click.group()
@click.option("--url", envvar="CORRIGENDA_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--key", envvar="CORRIGENDA_API_KEY", required=True, help="secret key (sk_…)")
@click.option("--project", "-p", envvar="CORRIGENDA_PROJECT", required=True, help="project slug")
@click.pass_context
def export(ctx: click.Context, url: str, key: str, project: str) -> None:
    """Create, list, download dataset versions; stream examples since a cursor."""
    ctx.obj = {"url": url, "key": key, "project": project}


def _fail_on_api_error(call: Any) -> Any:
    try:
        return call()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    except (RuntimeError, TimeoutError, DownloadError, httpx.HTTPError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@export.command("create")
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS), help="repeatable")
@click.option("--filter", "filter_json", default="{}", help='JSON, e.g. {"sources":["reviewed"]}')
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.pass_context
def create(ctx: click.Context, formats: tuple[str, ...], filter_json: str, wait: bool) -> None:
    """Create a version (built by a worker); with --wait show progress until it is ready."""
    try:
        flt = orjson.loads(filter_json)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from exc
    with _client(ctx) as client:
        version = _fail_on_api_error(
            lambda: client.create_dataset(
                ctx.obj["project"],
                formats=list(formats) or None,
                filter=flt,
                wait=wait,
                progress=wait,
            )
        )
    click.echo(f"version {version['number']}: {version['status']} {version['split_counts'] or ''}")


@export.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Versions, newest first."""
    with _client(ctx) as client:
        versions = _fail_on_api_error(lambda: client.list_datasets(ctx.obj["project"]))
    for v in versions:
        counts = " ".join(f"{k}={n}" for k, n in v["split_counts"].items())
        click.echo(
            f"v{v['number']}\t{v['status']}\t{v['created_at']}\t{','.join(v['formats'])}\t{counts}"
        )


@export.command("download")
@click.argument("number", type=int)
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS))
@click.pass_context
def download(ctx: click.Context, number: int, dest: Path, formats: tuple[str, ...]) -> None:
    """Download version NUMBER (sha256-verified, resumable) into DEST/<project>-v<NUMBER>/."""
    with _client(ctx) as client:
        folder = _fail_on_api_error(
            lambda: client.download(
                ctx.obj["project"], number, dest, formats=list(formats) or None, progress=True
            )
        )
    click.echo(str(folder))


@export.command("stream")
@click.option("--since", default=None, help="cursor to start after (default: --cursor-file or 0)")
@click.option(
    "--cursor-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="read the start cursor from here and save the last one after each page",
)
@click.option("--follow", is_flag=True, help="keep polling for new changes")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def stream(
    ctx: click.Context, since: str | None, cursor_file: Path | None, follow: bool, limit: int
) -> None:
    """Write examples changed after a cursor to stdout as JSONL (resumable)."""
    if since is None:
        since = cursor_file.read_text().strip() if cursor_file and cursor_file.exists() else "0"
    out = sys.stdout.buffer
    count = 0
    with _client(ctx) as client:
        rows = client.iter_examples(ctx.obj["project"], since=since, limit=limit, follow=follow)
        try:
            for row in rows:
                out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
                if cursor_file is not None and count % limit == 0:
                    out.flush()
                    cursor_file.write_text(row["cursor"])
                since = row["cursor"]
        except ApiError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            out.flush()
            if cursor_file is not None:
                cursor_file.write_text(since)
    click.echo(f"{count} examples; next cursor {since}", err=True)
