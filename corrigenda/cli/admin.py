"""``user``, ``project`` and ``key`` commands."""

from __future__ import annotations

import click

from ..keys import create_api_key
from ..projects import ProjectError, create_project, get_project
from ..users import UserError, create_user, get_user_by_email, grant_role
from .common import cli_transaction, fail, load_settings


def register(main: click.Group) -> None:
    main.add_command(user)
    main.add_command(project)
    main.add_command(key)


@click.group()
def user() -> None:
    """Manage reviewer and admin accounts."""


@user.command("create")
@click.option("--email", required=True, help="Login email.")
@click.password_option(help="Password (asked when not given).")
@click.option("--name", default="", help="Display name.")
@click.option("--superuser", is_flag=True, help="Admin of every project.")
@click.option("--project", "project_slug", help="Give a role in this project.")
@click.option("--role", type=click.Choice(["admin", "reviewer", "viewer"]), default="reviewer")
def create_user_command(
    email: str, password: str, name: str, superuser: bool, project_slug: str | None, role: str
) -> None:
    """Create a user, optionally with a role in one project."""
    with cli_transaction(load_settings()) as session:
        try:
            account = create_user(
                session, email=email, password=password, name=name, is_superuser=superuser
            )
            if project_slug:
                grant_role(
                    session, user=account, project=_project(session, project_slug), role=role
                )
        except UserError as exc:
            fail(str(exc))
    click.echo(f"Created user {account.email}" + (" (superuser)" if superuser else ""))


@user.command("grant")
@click.option("--email", required=True)
@click.option("--project", "project_slug", required=True)
@click.option("--role", type=click.Choice(["admin", "reviewer", "viewer"]), required=True)
def grant_user_command(email: str, project_slug: str, role: str) -> None:
    """Give an existing user a role in a project."""
    with cli_transaction(load_settings()) as session:
        account = get_user_by_email(session, email)
        if account is None:
            fail(f"no user with email {email!r}; create one with 'corrigenda user create'")
        grant_role(session, user=account, project=_project(session, project_slug), role=role)
    click.echo(f"{email} is now {role} of {project_slug}")


@click.group()
def project() -> None:
    """Manage projects."""


@project.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (defaults to the slug).")
@click.option(
    "--task-type",
    type=click.Choice(["classification", "multilabel", "text"]),
    default="classification",
    show_default=True,
)
@click.option("--label", "labels", multiple=True, help="A label; repeat for each.")
@click.option("--origin", "origins", multiple=True, help="An origin allowed to embed the widget.")
def create_project_command(
    slug: str, name: str | None, task_type: str, labels: tuple[str, ...], origins: tuple[str, ...]
) -> None:
    """Create a project."""
    with cli_transaction(load_settings()) as session:
        try:
            create_project(
                session,
                slug=slug,
                name=name,
                task_type=task_type,
                labels=list(labels),
                allowed_origins=list(origins),
            )
        except ProjectError as exc:
            fail(str(exc))
    click.echo(f"Created project {slug} ({task_type})")


@click.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.argument("project_slug")
@click.option(
    "--kind",
    type=click.Choice(["publishable", "secret"]),
    required=True,
    help="publishable (pk_, for browsers) or secret (sk_, for servers).",
)
@click.option("--name", default="", help="What the key is for.")
def create_key_command(project_slug: str, kind: str, name: str) -> None:
    """Create a key. The key is printed once and cannot be shown again."""
    with cli_transaction(load_settings()) as session:
        _, plaintext = create_api_key(
            session, project=_project(session, project_slug), kind=kind, name=name
        )
    click.echo(plaintext)
    click.echo("Store this key now: it is not shown again.", err=True)


def _project(session, slug: str):  # type: ignore[no-untyped-def]
    found = get_project(session, slug)
    if found is None:
        fail(f"no project {slug!r}; create it with 'corrigenda project create {slug}'")
    return found
