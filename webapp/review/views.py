"""Queue views. One URL renders the full page or, for htmx, just the item fragment."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import abort, g, make_response, redirect, render_template, request, url_for
from flask_login import login_required

from corrigenda.decisions import ItemNotFound, decide
from corrigenda.models import Membership, Project, ReviewItem
from corrigenda.review import QueueFilter, ReviewError, claim_next_item, pending_counts, renew_lease
from corrigenda.undo import undo_last

from ..auth.guards import in_this_project_or_404, project_role
from ..auth.session import me
from ..extensions import db_transaction, get_settings, read_session
from . import bp
from .context import ItemContext, item_context


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    with read_session() as session:
        projects = _my_projects(session)
        counts = pending_counts(session, [p.id for p, _ in projects])  # type: ignore[misc]
    return render_template("review/index.html", projects=projects, counts=counts)


def _my_projects(session) -> list[tuple[Project, str]]:  # type: ignore[no-untyped-def]
    from sqlmodel import col, select

    user = me()
    if user.is_superuser:
        return [(p, "admin") for p in session.exec(select(Project).order_by(col(Project.slug)))]
    statement = (
        select(Project, Membership.role)
        .join(Membership, col(Membership.project_id) == Project.id)
        .where(Membership.user_id == user.id)
        .order_by(col(Project.slug))
    )
    return list(session.exec(statement))


@bp.get("/<slug>")
@project_role("viewer")
def queue(slug: str):  # type: ignore[no-untyped-def]
    filters = _filters(request.args)
    if g.role == "viewer":
        return _browse(filters)
    return _render_next(filters)


@bp.post("/<slug>/items/<int:item_id>/decide")
@project_role("reviewer")
def decide_item(slug: str, item_id: int):  # type: ignore[no-untyped-def]
    filters = _filters(dict(parse_qsl(request.form.get("filters", ""))))
    try:
        # Decide and claim the next item in one transaction: one commit per keystroke.
        with db_transaction() as session:
            decide(
                session,
                item_id=item_id,
                user=me(),
                action=_action(),
                value=request.form.get("label") or _value(),
                duration_ms=_int(request.form.get("duration_ms")),
                cluster=request.form.get("cluster") in ("1", "on", "true"),
                project=g.project,
            )
            context = _claim_context(session, filters)
    except ItemNotFound:
        abort(404)
    except ReviewError as exc:
        return _render_next(filters, error=str(exc), saved=False)
    return _render(context, filters, saved=True)


@bp.post("/<slug>/undo")
@project_role("reviewer")
def undo(slug: str):  # type: ignore[no-untyped-def]
    filters = _filters(dict(parse_qsl(request.form.get("filters", ""))))
    with db_transaction() as session:
        item = undo_last(session, project=g.project, user=me())
    message = "Nothing left to undo." if item is None else "Undone: the item is back."
    return _render_next(filters, notice=message)


@bp.post("/<slug>/items/<int:item_id>/lease")
@project_role("reviewer")
def renew(slug: str, item_id: int):  # type: ignore[no-untyped-def]
    with db_transaction() as session:
        held = renew_lease(
            session, item_id=item_id, user=me(), lease_seconds=get_settings().lease_seconds
        )
    return ("", 204) if held else ("lease lost", 409)


@bp.get("/<slug>/items/<int:item_id>")
@project_role("viewer")
def item(slug: str, item_id: int):  # type: ignore[no-untyped-def]
    with read_session() as session:
        review_item = in_this_project_or_404(session, ReviewItem, item_id)
        context = item_context(session, review_item)
    return render_template("review/item.html", ctx=context, project=g.project, role=g.role)


def _render_next(filters: QueueFilter, **flash: Any):  # type: ignore[no-untyped-def]
    with db_transaction() as session:
        context = _claim_context(session, filters)
    return _render(context, filters, **flash)


def _claim_context(session, filters: QueueFilter) -> ItemContext | None:  # type: ignore[no-untyped-def]
    claimed = claim_next_item(
        session,
        project=g.project,
        user=me(),
        filters=filters,
        lease_seconds=get_settings().lease_seconds,
    )
    return item_context(session, claimed) if claimed is not None else None


def _render(context: ItemContext | None, filters: QueueFilter, **flash: Any):  # type: ignore[no-untyped-def]
    template = "review/_item.html" if request.headers.get("HX-Request") else "review/queue.html"
    if request.method == "POST" and not request.headers.get("HX-Request"):
        return redirect(url_for("review.queue", slug=g.project.slug, **filters.as_query()))
    response = make_response(
        render_template(
            template,
            ctx=context,
            project=g.project,
            role=g.role,
            filters=filters,
            filter_query=urlencode(filters.as_query()),
            lease_seconds=get_settings().lease_seconds,
            **flash,
        )
    )
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-store"
    return response


def _browse(filters: QueueFilter):  # type: ignore[no-untyped-def]
    from sqlmodel import col, select

    with read_session() as session:
        items = list(
            session.exec(
                select(ReviewItem)
                .where(ReviewItem.project_id == g.project.id, ReviewItem.reason != "gold")
                .order_by(col(ReviewItem.id).desc())
                .limit(100)
            )
        )
    return render_template("review/browse.html", items=items, project=g.project, role=g.role)


def _filters(args: Any) -> QueueFilter:
    segment = {
        key.removeprefix("segment."): value
        for key, value in args.items()
        if key.startswith("segment.") and value
    }
    key, _, value = (args.get("segment") or "").partition("=")
    if key.strip() and value.strip():
        segment[key.strip()] = value.strip()
    return QueueFilter(
        reason=args.get("reason") or None,
        model_version=args.get("model_version") or None,
        predicted_label=args.get("label") or None,
        segment=segment,
    )


def _action() -> str:
    """A label button posts ``label`` alone: choosing a label is a relabel."""
    return request.form.get("action") or ("relabel" if request.form.get("label") else "")


def _value() -> Any:
    values = request.form.getlist("value")
    values = [v for v in values if v != ""]
    if g.project.task_type == "multilabel":
        return values
    return values[-1] if values else None


def _int(raw: str | None) -> int | None:
    try:
        return int(float(raw)) if raw else None
    except ValueError:
        return None
