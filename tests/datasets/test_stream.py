"""The example stream: keyset pages by a commit-safe cursor, revisions and tombstones."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from corrigenda.datasets import Record
from corrigenda.db import make_engine, transaction
from corrigenda.examples import Cursor, delete_example, read_stream, upsert_example
from corrigenda.models import Example, Prediction, Project
from tests.datasets.conftest import add_examples, new_project
from tests.factories import make_prediction
from tests.services import wait_for


def page(engine: Engine, project_id: int, after: Cursor, limit: int) -> list[Record]:
    with engine.connect() as connection:
        rows = read_stream(connection, project_id=project_id, after=after, limit=limit)
    return [Record.from_row(r) for r in rows]


def drain(
    engine: Engine, project_id: int, after: Cursor | None = None, limit: int = 3, expect: int = 0
):
    """Read pages until ``expect`` rows came. On PostgreSQL the stream may lag while any
    writing transaction in the cluster is open (other test runs share it), never lose rows."""
    seen: list[Record] = []
    after = after or Cursor()

    def more() -> bool:
        nonlocal after
        while batch := page(engine, project_id, after, limit):
            seen.extend(batch)
            after = batch[-1].cursor
        return len(seen) >= expect

    wait_for(more, timeout=30, message=f"stream gave {len(seen)} of {expect} rows")
    return seen, after


def test_cursor_round_trip_and_bad_values() -> None:
    assert Cursor.parse(str(Cursor(12, 7))) == Cursor(12, 7)
    assert Cursor.parse(None) == Cursor.parse("0") == Cursor()
    for bad in ("x", "1-y", "-3-1"):
        with pytest.raises(ValueError):
            Cursor.parse(bad)


def test_pages_cover_every_example_once_then_revisions_and_tombstones(engine: Engine) -> None:
    project_id = new_project(engine)
    ids = add_examples(engine, project_id, 10)
    seen, cursor = drain(engine, project_id, expect=10)
    assert [r.id for r in seen] == ids
    assert page(engine, project_id, cursor, 10) == []

    with transaction(engine) as session:
        example = session.get(Example, ids[4])
        prediction = session.get(Prediction, example.prediction_id)
        upsert_example(
            session, prediction=prediction, target="other", source="reviewed", provenance={}
        )
        upsert_example(
            session, prediction=prediction, target="other", source="reviewed", provenance={}
        )
        delete_example(session, example=session.get(Example, ids[7]))
    changed, cursor = drain(engine, project_id, cursor, expect=2)
    assert [(r.id, r.revision, r.deleted) for r in changed] == [
        (ids[4], 2, False),
        (ids[7], 2, True),
    ]
    assert changed[0].target == "other"
    assert page(engine, project_id, cursor, 10) == []


def test_uncommitted_older_writer_holds_the_stream_back_on_postgresql(pg_url: str) -> None:
    """T1 writes first (smaller position) but commits last: the reader must not move past it."""
    engine = make_engine(pg_url)
    project_id = new_project(engine)
    add_examples(engine, project_id, 2)
    seen, cursor = drain(engine, project_id, expect=2)

    slow = Session(engine)
    slow.begin()
    project = slow.get(Project, project_id)
    late = make_prediction(slow, project, client_id="late")
    upsert_example(slow, prediction=late, target="bug", source="reviewed", provenance={})
    (newer,) = add_examples(engine, project_id, 1, start=100)  # commits while T1 is open

    assert page(engine, project_id, cursor, 10) == []  # held back, not skipped
    slow.commit()
    slow.close()
    rows, _ = drain(engine, project_id, cursor, expect=2)
    assert len(rows) == 2 and rows[1].id == newer  # T1's row first: it began first
    engine.dispose()


def test_stream_never_skips_or_repeats_under_concurrent_writers(db_url: str) -> None:
    engine = make_engine(db_url, **({} if db_url.startswith("sqlite") else {"pool_size": 6}))
    project_id = new_project(engine)
    add_examples(engine, project_id, 20)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for round_ in range(15):
                add_examples(engine, project_id, 2, start=1000 * offset + 2 * round_)
                with transaction(engine) as session:
                    example = session.exec(
                        select(Example)
                        .where(Example.project_id == project_id)
                        .limit(1)
                        .offset(round_)
                    ).first()
                    prediction = session.get(Prediction, example.prediction_id)
                    upsert_example(
                        session,
                        prediction=prediction,
                        target=f"t{offset}-{round_}",
                        source="reviewed",
                        provenance={},
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    served: list[tuple[int, int]] = []
    cursor = Cursor()
    while any(t.is_alive() for t in threads):
        batch = page(engine, project_id, cursor, 4)
        served += [(r.id, r.revision) for r in batch]
        cursor = batch[-1].cursor if batch else cursor
    for thread in threads:
        thread.join()
    stop.set()
    assert not errors, errors
    with transaction(engine) as session:
        query = select(Example).where(Example.project_id == project_id)
        final = {e.id: e.revision for e in session.exec(query)}
    latest: dict[int, int] = {}

    def caught_up() -> bool:
        nonlocal cursor
        while batch := page(engine, project_id, cursor, 4):
            served.extend((r.id, r.revision) for r in batch)
            cursor = batch[-1].cursor
        latest.clear()
        for ident, revision in served:
            latest[ident] = max(latest.get(ident, 0), revision)
        return latest == final

    wait_for(caught_up, timeout=30, message="the stream missed an example or its latest revision")
    assert len(served) == len(set(served)), "an (example, revision) was served twice"
    # Every revision an example went through while the reader was paging is at most once.
    assert all(r <= final[i] for i, r in served)
    engine.dispose()


def test_a_writer_in_another_database_does_not_stall_the_stream(pg_url: str) -> None:
    import psycopg

    from tests.services import POSTGRES_ADMIN_URL

    engine = make_engine(pg_url)
    project_id = new_project(engine)
    with psycopg.connect(POSTGRES_ADMIN_URL) as neighbour:
        neighbour.execute("SELECT pg_current_xact_id()")  # holds an xid, in another database
        ids = add_examples(engine, project_id, 3)
        seen, _ = drain(engine, project_id, expect=3)
        neighbour.rollback()
    assert [r.id for r in seen] == ids
    engine.dispose()
