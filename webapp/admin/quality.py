"""Review quality: reviewer stats, agreement, adjudication of disagreements, gold, audit."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from sqlmodel import col, select

from corrigenda.adjudication import adjudicate, mark_gold, unmark_gold
from corrigenda.audit import recent_audit
from corrigenda.decisions import effective_votes
from corrigenda.models import Example, ReviewItem
from corrigenda.review import ReviewError
from corrigenda.review_stats import project_agreement, reviewer_stats

from ..auth.guards import in_this_project_or_404, project_role
from ..auth.session import me
from ..extensions import db_transaction, read_session
from ..review.context import item_context
from . import bp


@bp.get("/<slug>/stats")
@project_role("admin")
def stats(slug: str):  # type: ignore[no-untyped-def]
    with read_session() as session:
        rows = reviewer_stats(session, g.project.id)
        agreement = project_agreement(session, g.project.id)
    return render_template("admin/stats.html", project=g.project, rows=rows, agreement=agreement)


@bp.get("/<slug>/adjudicate")
@project_role("admin")
def adjudication(slug: str):  # type: ignore[no-untyped-def]
    with read_session() as session:
        items = list(
            session.exec(
                select(ReviewItem)
                .where(ReviewItem.project_id == g.project.id, ReviewItem.needs_adjudication)
                .order_by(col(ReviewItem.priority).desc(), col(ReviewItem.id))
                .limit(50)
            )
        )
        contexts = [
            (item_context(session, i), list(effective_votes(session, i.id).values())) for i in items
        ]  # type: ignore[arg-type]
    return render_template("admin/adjudicate.html", project=g.project, contexts=contexts)


@bp.post("/<slug>/adjudicate/<int:item_id>")
@project_role("admin")
def adjudicate_item(slug: str, item_id: int):  # type: ignore[no-untyped-def]
    try:
        with db_transaction() as session:
            in_this_project_or_404(session, ReviewItem, item_id)
            adjudicate(
                session,
                item_id=item_id,
                admin=me(),
                action=request.form.get("action", ""),
                value=request.form.get("value") or None,
            )
    except ReviewError as exc:
        flash(str(exc))
    return redirect(url_for("admin.adjudication", slug=g.project.slug))


@bp.get("/<slug>/gold")
@project_role("admin")
def gold(slug: str):  # type: ignore[no-untyped-def]
    with read_session() as session:
        examples = list(
            session.exec(
                select(Example)
                .where(Example.project_id == g.project.id, col(Example.deleted_at).is_(None))
                .order_by(col(Example.is_gold).desc(), col(Example.id).desc())
                .limit(200)
            )
        )
    return render_template("admin/gold.html", project=g.project, examples=examples)


@bp.post("/<slug>/gold/<int:example_id>")
@project_role("admin")
def toggle_gold(slug: str, example_id: int):  # type: ignore[no-untyped-def]
    try:
        with db_transaction() as session:
            example = in_this_project_or_404(session, Example, example_id)
            if request.form.get("gold") == "1":
                mark_gold(session, example=example, actor=me())
            else:
                unmark_gold(session, example=example, actor=me())
    except ReviewError as exc:
        flash(str(exc))
    return redirect(url_for("admin.gold", slug=g.project.slug))


@bp.get("/<slug>/audit")
@project_role("admin")
def audit(slug: str):  # type: ignore[no-untyped-def]
    before = request.args.get("before", type=int)
    with read_session() as session:
        entries = recent_audit(session, project_id=g.project.id, limit=100, before_id=before)
    return render_template("admin/audit.html", project=g.project, entries=entries)
