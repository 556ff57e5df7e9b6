"""What the metric definitions need about a set of predictions, in ONE set-based query.

The database does the heavy part — the effective opinion per end user (a window function:
latest by client time, then arrival, then id), whether the prediction was viewed, its
settled label and whether that came from the audit sample, a shadow prediction's
production twin — and returns one row per prediction. Python then only applies the
definitions (``definitions.py``) to those few columns. The same SQL runs on PostgreSQL and
SQLite (window functions since SQLite 3.25); only string aggregation, the UTC date and the
"id in a list" test differ by dialect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import Date, bindparam, text
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Session

from ..db import is_sqlite

WORK_MEM = "64MB"

# Events processing set aside still count when "superseded": real opinions the
# effective-opinion rule resolves itself. Capped or quarantined ones don't.
_SQL = """
WITH ranked AS (
  SELECT e.prediction_id, e.kind, e.time_to_decision_ms AS ttd,
         CASE WHEN e.kind IN ('accept', 'reject', 'correct') THEN 1 ELSE 0 END AS opinion,
         row_number() OVER (
           PARTITION BY e.prediction_id, coalesce(e.end_user, ''),
                        CASE WHEN e.kind IN ('accept', 'reject', 'correct') THEN 1 ELSE 0 END
           ORDER BY coalesce(e.client_time, e.received_at) DESC, e.received_at DESC, e.id DESC
         ) AS rn
  FROM feedback_event e
  WHERE {event_filter}
    AND (e.ignored_reason IS NULL OR e.ignored_reason = 'superseded')
), summary AS (
  SELECT prediction_id,
         max(CASE WHEN kind = 'view' THEN 1 ELSE 0 END) AS viewed,
         sum(CASE WHEN opinion = 1 AND rn = 1 THEN 1 ELSE 0 END) AS opinions,
         max(CASE WHEN opinion = 1 AND rn = 1 AND kind <> 'accept' THEN 1 ELSE 0 END)
           AS overridden,
         {string_agg} AS ttds
  FROM ranked GROUP BY prediction_id
), twins AS (
  SELECT q.id AS shadow_id, tw.id, tw.output, tw.shadow_of
  FROM prediction q
  JOIN prediction tw ON tw.project_id = q.project_id AND tw.client_id = q.shadow_of
  WHERE q.shadow_of IS NOT NULL AND {twin_filter}
)
SELECT p.id, p.project_id, p.shadow_of, p.model_version, {utc_day} AS day,
       CAST(p.segment AS TEXT) AS segment, CAST(p.output AS TEXT) AS output, p.confidence,
       CASE WHEN p.shown_at IS NOT NULL OR s.viewed = 1 THEN 1 ELSE 0 END AS viewed,
       coalesce(s.opinions, 0) AS opinions, coalesce(s.overridden, 0) AS overridden, s.ttds,
       CASE WHEN tw.id IS NULL THEN 0 ELSE 1 END AS has_twin,
       CAST(tw.output AS TEXT) AS twin_output,
       CASE WHEN x.id IS NULL THEN 0 ELSE 1 END AS settled,
       CAST(x.target AS TEXT) AS target,
       CASE WHEN x.id IS NULL THEN 0
            WHEN EXISTS (SELECT 1 FROM review_item r
                         WHERE r.prediction_id = x.prediction_id
                           AND r.reason = 'audit' AND r.status = 'done') THEN 1
            ELSE 0 END AS audited
FROM prediction p
LEFT JOIN summary s ON s.prediction_id = p.id AND p.shadow_of IS NULL
LEFT JOIN twins tw ON tw.shadow_id = p.id
LEFT JOIN example x
  ON x.project_id = p.project_id AND x.deleted_at IS NULL
 AND x.prediction_id = CASE WHEN p.shadow_of IS NULL THEN p.id
                            WHEN tw.shadow_of IS NULL THEN tw.id END
WHERE {prediction_filter}
"""


# The UTC date of the prediction (SQLite stores UTC text: see models.base.UTCDateTime).
_SQLITE_DAY = "date(p.created_at)"
_PG_DAY = "CAST(timezone('UTC', p.created_at) AS DATE)"
# An effective opinion's time to decision; NULL otherwise (both aggregates skip NULLs).
_TTD_TEXT = "CASE WHEN opinion = 1 AND rn = 1 THEN CAST(ttd AS TEXT) END"


class InputRow(NamedTuple):
    """One prediction as the definitions see it. JSON columns stay text (parsed, cached)."""

    id: int
    project_id: int
    shadow_of: str | None
    model_version: str | None
    day: date
    segment: str | None
    output: str | None
    confidence: float | None
    viewed: int
    opinions: int
    overridden: int
    ttds: str | None
    has_twin: int
    twin_output: str | None
    settled: int
    target: str | None
    audited: int


# Filters: ``{a}`` is the prediction table's alias; other fields are parameter placeholders.
_RANGE = "{a}.project_id = {project_id} AND {a}.id > {low} AND {a}.id <= {high}"
_EVENT_RANGE = (
    "e.project_id = {project_id} AND e.prediction_id > {low} AND e.prediction_id <= {high}"
)
_NAMES = ("project_id", "low", "high", "ids")
_SQLALCHEMY_STYLE = {name: f":{name}" for name in _NAMES}
_PSYCOPG_STYLE = {name: f"%({name})s" for name in _NAMES}


def _sql(sqlite: bool, prediction_filter: str, event_filter: str, style: dict[str, str]) -> str:
    return _SQL.format(
        prediction_filter=prediction_filter.format(a="p", **style),
        twin_filter=prediction_filter.format(a="q", **style),
        event_filter=event_filter.format(**style),
        string_agg=f"{'group_concat' if sqlite else 'string_agg'}({_TTD_TEXT}, ',')",
        utc_day=_SQLITE_DAY if sqlite else _PG_DAY,
    )


def _statement(session: Session, prediction_filter: str, event_filter: str) -> TextClause:
    sqlite = is_sqlite(session.get_bind())  # type: ignore[arg-type]
    sql = _sql(sqlite, prediction_filter, event_filter, _SQLALCHEMY_STYLE)
    return text(sql).columns(day=Date())  # type: ignore[return-value]


def _tune(session: Session) -> None:
    """PostgreSQL, for the rest of this transaction: no JIT (the planner's cost guesses for
    the window query trigger seconds of compiling for a sub-second query) and room to sort
    a chunk's events in memory."""
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))


def rows_in_range(session: Session, project_id: int, low: int, high: int) -> Iterator[InputRow]:
    """Every prediction of a project with ``low < id <= high`` (a rebuild's keyset chunk)."""
    params = {"project_id": project_id, "low": low, "high": high}
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        statement = _statement(session, _RANGE, _EVENT_RANGE)
        for row in session.execute(statement, params):
            yield InputRow._make(row)
        return
    # PostgreSQL: the driver's own cursor — a rebuild reads a million rows, and skipping the
    # SQLAlchemy result layer halves the time per row.
    _tune(session)
    sql = _sql(False, _RANGE, _EVENT_RANGE, _PSYCOPG_STYLE)
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(sql, params)
        yield from map(InputRow._make, cursor.fetchall())


def rows_for_ids(session: Session, ids: Sequence[int]) -> Iterator[InputRow]:
    """These predictions, whatever their project (an incremental round)."""
    if not ids:
        return
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        statement = _statement(session, "{a}.id IN {ids}", "e.prediction_id IN {ids}")
        statement = statement.bindparams(bindparam("ids", expanding=True))
        params: dict[str, Any] = {"ids": list(ids)}
    else:  # one array parameter: no thousands of placeholders to parse
        statement = _statement(
            session,
            "{a}.id = ANY(CAST({ids} AS BIGINT[]))",
            "e.prediction_id = ANY(CAST({ids} AS BIGINT[]))",
        )
        params = {"ids": "{" + ",".join(map(str, ids)) + "}"}
        _tune(session)
    for row in session.execute(statement, params):
        yield InputRow._make(row)
