"""Creating dataset versions (in the request) and building them (in a worker).

A build reads one consistent snapshot of the examples (REPEATABLE READ on PostgreSQL, a
deferred read transaction on SQLite: writes during the build never leak into it), writes
every format in one streaming pass with bounded memory, checksums the files, writes the
manifest and datasheet, and publishes the folder in one step. Once ``ready`` a version
never changes (except for an erasure notice in its manifest).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import adbc_driver_manager as adbc
import adbc_driver_postgresql as adbc_postgresql
import orjson
import psycopg
import pyarrow as pa
from psycopg import pq
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..db import is_sqlite, transaction
from ..examples import PG_HORIZON, Cursor, stream_columns
from ..models import DatasetVersion, Project, utcnow
from . import pgcopy
from .filters import DatasetFilter, matches, sql_conditions
from .formats import FORMATS, TEXT_ONLY_FORMATS, WRITERS, ExportContext, FormatWriter
from .manifest import BuildStats, build_manifest, datasheet, file_entry
from .records import Record
from .splits import Splitter
from .storage import LocalStorage

FETCH = 5_000
FROM_EXAMPLES = "example e LEFT JOIN prediction p ON p.id = e.prediction_id"
PROGRESS_EVERY = 20_000  # rows, and at most one write per PROGRESS_SECONDS
PROGRESS_SECONDS = 1.0
STALE_AFTER = timedelta(minutes=10)
# The exports' plan (parallel scans, hash join of the predictions, sort by id) at the default
# 2 x work_mem splits the predictions' hash into 16 batches that spill both sides to disk;
# 16 x work_mem per process holds 1,000,000 predictions in one (~100 MB, only during the
# query; larger projects batch again). 1M rows, 3 alternating pairs of the read-only JSONL
# COPY: 3.98-4.70 s -> 3.69-4.53 s.
HASH_MEM = "SET LOCAL hash_mem_multiplier = 16"


class DatasetRequestError(ValueError):
    """A dataset request that cannot be carried out; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def version_prefix(project_slug: str, number: int) -> str:
    return f"{project_slug}/v{number}"


def create_version(
    session: Session, *, project: Project, flt: DatasetFilter, formats: list[str]
) -> DatasetVersion:
    """Add a ``pending`` version with the next number; a worker builds it after commit."""
    formats = list(dict.fromkeys(formats))
    for index, name in enumerate(formats):
        if name not in FORMATS:
            raise DatasetRequestError(f"/formats/{index}", f"unknown format {name!r}")
        if name in TEXT_ONLY_FORMATS and project.task_type != "text":
            raise DatasetRequestError(
                f"/formats/{index}", f"{name!r} needs a text project, not {project.task_type!r}"
            )
    if not formats:
        raise DatasetRequestError("/formats", "choose at least one format")
    if not is_sqlite(session.get_bind()):  # number versions one at a time per project
        session.exec(select(Project.id).where(Project.id == project.id).with_for_update()).one()
    last = session.exec(
        select(func.max(DatasetVersion.number)).where(DatasetVersion.project_id == project.id)
    ).one()
    version = DatasetVersion(
        project_id=project.id, number=(last or 0) + 1, filter=flt.as_json(), formats=formats
    )
    session.add(version)
    session.flush()
    return version


def pending_version_ids(session: Session, *, limit: int = 10) -> list[int]:
    """Versions waiting for a build, and builds whose worker stopped sending heartbeats."""
    stale = utcnow() - STALE_AFTER
    query = (
        select(DatasetVersion.id)
        .where(
            (DatasetVersion.status == "pending")
            | ((DatasetVersion.status == "building") & (col(DatasetVersion.heartbeat_at) < stale))
        )
        .order_by(col(DatasetVersion.id))
        .limit(limit)
    )
    return [i for i in session.exec(query) if i is not None]


def claim(engine: Engine, version_id: int) -> bool:
    """Atomically move a version to ``building``; False if someone else has it or it is done."""
    stale = utcnow() - STALE_AFTER
    with transaction(engine) as session:
        result = session.execute(
            update(DatasetVersion)
            .where(col(DatasetVersion.id) == version_id)
            .where(
                (DatasetVersion.status == "pending")
                | (
                    (DatasetVersion.status == "building")
                    & (col(DatasetVersion.heartbeat_at) < stale)
                )
            )
            .values(status="building", progress=0.0, heartbeat_at=utcnow(), error=None)
        )
        return result.rowcount == 1


@dataclass
class BuildOutcome:
    version_id: int
    status: str
    event: dict[str, Any] | None = None  # webhook payload, sent by the caller after commit


def build_version(
    engine: Engine, storage: LocalStorage, version_id: int, *, fast: bool = True
) -> BuildOutcome | None:
    """Build one version end to end. Returns None if it was not ours to build.

    Safe to run twice: a second run finds the version claimed or finished and does nothing.
    ``fast=False`` turns off the PostgreSQL ``COPY`` path (tests compare the two).
    """
    if not claim(engine, version_id):
        return None
    with transaction(engine) as session:
        version = session.get(DatasetVersion, version_id)
        project = session.get(Project, version.project_id) if version else None
        if version is None or project is None:
            return None
        job = _Job(version=version, project=project, fast=fast)
    staging = storage.staging(version_prefix(project.slug, version.number))
    try:
        manifest, sheet = job.run(engine, staging)
        storage.publish(staging, job.prefix)
    except Exception as exc:
        storage.discard(staging)
        return _finish_failed(engine, job, exc)
    return _finish_ready(engine, job, manifest, sheet)


def _finish_ready(engine: Engine, job: _Job, manifest: dict[str, Any], sheet: str) -> BuildOutcome:
    with transaction(engine) as session:
        version = session.get(DatasetVersion, job.version.id)
        assert version is not None
        version.status, version.progress = "ready", 1.0
        version.manifest, version.datasheet = manifest, sheet
        version.split_counts = manifest["counts"]["splits"]
        version.finished_at = utcnow()
    return BuildOutcome(job.version.id, "ready", job.event("dataset.ready", manifest=manifest))


def _finish_failed(engine: Engine, job: _Job, exc: Exception) -> BuildOutcome:
    message = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction(engine) as session:
        version = session.get(DatasetVersion, job.version.id)
        assert version is not None
        version.status, version.error, version.finished_at = "failed", message, utcnow()
    return BuildOutcome(job.version.id, "failed", job.event("dataset.failed", error=message))


@dataclass
class _Job:
    version: DatasetVersion
    project: Project
    fast: bool = True

    @property
    def prefix(self) -> str:
        return version_prefix(self.project.slug, self.version.number)

    def event(self, kind: str, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "project": self.project.slug,
            "number": self.version.number,
            "status": kind.split(".")[1],
        }
        if "manifest" in extra:
            manifest = extra.pop("manifest")
            payload.update(counts=manifest["counts"]["splits"], files=len(manifest["files"]))
        payload.update(extra)
        return {"type": kind, "payload": payload}

    def run(self, engine: Engine, staging: Path) -> tuple[dict[str, Any], str]:
        flt = DatasetFilter.model_validate(self.version.filter)
        splitter = Splitter(self.project.id, (self.project.policy or {}).get("split_ratios"))
        context = ExportContext(
            self.project.task_type,
            list(self.project.labels),
            self.project.slug,
            self.version.number,
        )
        stats = BuildStats(count_labels=self.project.task_type != "text")
        # The leakage check (~0.4 s per 1,000,000 rows, database time) runs beside the export.
        leakage_args = (self.project.id, flt, splitter)
        with snapshot(engine) as snap, snap.alongside(Snapshot.leakage, *leakage_args) as leakage:
            fast = self._fast_formats(snap, splitter)
            writers = [WRITERS[n](staging, context) for n in self.version.formats if n not in fast]
            horizon = snap.horizon(self.project.id)
            total = snap.progress_total(self.project.id, flt)
            heartbeat = _Heartbeat(engine, self.version.id, total * (len(fast) + bool(writers)))
            if writers:
                self._write_rows(snap, flt, splitter, writers, stats, heartbeat)
            files = {}
            if fast:
                assert snap.copy is not None and snap.read is not None
                files = pgcopy.export(
                    snap.copy,
                    snap.read,
                    snap.fast_source(self.project.id, flt, splitter),
                    splitter,
                    context,
                    staging,
                    fast,
                    BuildStats(count_labels=stats.count_labels) if writers else stats,
                    lambda index, done: heartbeat.tick((index + bool(writers)) * total + done),
                )
        return self._write_meta(
            staging, writers, files, stats, leakage.result(), horizon, flt, splitter
        )

    def _fast_formats(self, snap: Snapshot, splitter: Splitter) -> list[str]:
        """The formats PostgreSQL builds row by row itself (see ``pgcopy``)."""
        if not self.fast or snap.copy is None or not pgcopy.supports(splitter):
            return []
        return [name for name in self.version.formats if name in pgcopy.FAST_FORMATS]

    def _write_rows(
        self,
        snap: Snapshot,
        flt: DatasetFilter,
        splitter: Splitter,
        writers: list[FormatWriter],
        stats: BuildStats,
        heartbeat: _Heartbeat,
    ) -> None:
        """The general path: one ``Record`` per row through every writer (SQLite, and the
        formats PostgreSQL does not build itself)."""
        for record in snap.records(self.project.id, flt):
            record.split = splitter(record.cluster_id, record.id)
            if not matches(flt, record):
                continue
            for writer in writers:
                writer.add(record)
            stats.add(record)
            heartbeat.tick(stats.total)

    def _write_meta(
        self,
        staging: Path,
        writers: list[FormatWriter],
        fast_files: dict[str, dict[str, Any]],
        stats: BuildStats,
        leakage: dict[str, Any],
        horizon: Cursor,
        flt: DatasetFilter,
        splitter: Splitter,
    ) -> tuple[dict[str, Any], str]:
        closed = [(name, info) for writer in writers for name, info in writer.close().items()]
        files = [file_entry(staging, name, info) for name, info in [*closed, *fast_files.items()]]
        header = {
            "project": self.project.slug,
            "number": self.version.number,
            "created_at": utcnow().isoformat(),
            "task_type": self.project.task_type,
            "formats": self.version.formats,
            "filter": flt.as_json(),
            "split_ratios": splitter.ratios,
            "high_water_mark": str(horizon),
        }
        refused = {w.folder: dict(w.refused) for w in writers}
        manifest = build_manifest(
            header=header, stats=stats, files=files, refused=refused, leakage=leakage
        )
        project = {"slug": self.project.slug, "name": self.project.name}
        sheet = datasheet(manifest, {**project, "task_type": self.project.task_type})
        (staging / "datasheet.md").write_text(sheet)
        (staging / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return manifest, sheet


class _Heartbeat:
    """Progress and liveness, in short transactions of their own (not the snapshot's)."""

    def __init__(self, engine: Engine, version_id: int, total: int) -> None:
        self.engine, self.version_id, self.total, self.last = engine, version_id, total, 0
        self.written_at = time.monotonic()

    def tick(self, done: int) -> None:
        # Each write is a committed transaction (~5-9 ms with its WAL flush): every 20,000
        # rows that was ~50 of them, 0.4 s of a 1,000,000-row Parquet build. A heartbeat a
        # second is plenty for progress and for liveness (STALE_AFTER).
        now = time.monotonic()
        if done - self.last < PROGRESS_EVERY or now - self.written_at < PROGRESS_SECONDS:
            return
        self.last, self.written_at, total = done, now, self.total
        with transaction(self.engine) as session:
            session.execute(
                update(DatasetVersion)
                .where(col(DatasetVersion.id) == self.version_id)
                .values(progress=min(done / max(total, 1), 0.99), heartbeat_at=utcnow())
            )


# --- the consistent snapshot ----------------------------------------------------------------


class Snapshot:
    """Queries that all see the same committed state of the database."""

    def __init__(
        self,
        dialect: str,
        run: Callable[[str, dict[str, Any]], Iterator[tuple]],
        copy: pgcopy.Copy | None = None,
        estimate: Callable[[str, dict[str, Any]], int] | None = None,
        read: pgcopy.Read | None = None,
        beside: Callable[[], AbstractContextManager[Snapshot]] | None = None,
    ) -> None:
        self.dialect, self._run, self.copy, self._estimate = dialect, run, copy, estimate
        self.read, self._beside = read, beside

    @contextmanager
    def alongside(self, work: Callable[..., Any], *args: Any) -> Iterator[Future]:
        """``work(snapshot, *args)`` on a second connection reading this same snapshot, in a
        thread while the block runs (done here and now where there is no second connection:
        SQLite). The block's exit waits for it, so it never outlives the snapshot."""
        if self._beside is None:
            done: Future = Future()
            try:
                done.set_result(work(self, *args))
            except Exception as exc:  # raised by ``result()``, as from the thread
                done.set_exception(exc)
            yield done
            return
        opened = self._beside()

        def run() -> Any:
            with opened as other:
                return work(other, *args)

        with ThreadPoolExecutor(max_workers=1) as pool:
            yield pool.submit(run)

    def _where(self, project_id: int, flt: DatasetFilter) -> tuple[str, dict[str, Any]]:
        conditions, params = sql_conditions(flt, self.dialect)
        where = " AND ".join(["e.project_id = :project_id", "e.deleted_at IS NULL", *conditions])
        return where, {"project_id": project_id, **params}

    def horizon(self, project_id: int) -> Cursor:
        """The stream cursor below which this snapshot holds every change (the high-water
        mark: streaming ``since`` it continues after this version, at least once)."""
        if self.dialect == "postgresql":
            sql = f"SELECT {PG_HORIZON}"
            return Cursor(int(list(self._run(sql, {}))[0][0]), 0)
        sql = "SELECT max(seq) FROM example WHERE project_id = :project_id"
        return Cursor((list(self._run(sql, {"project_id": project_id}))[0][0] or 0) + 1, 0)

    def count(self, project_id: int, flt: DatasetFilter) -> int:
        where, params = self._where(project_id, flt)
        sql = f"SELECT count(*) FROM {FROM_EXAMPLES} WHERE {where}"
        return int(list(self._run(sql, params))[0][0])

    def progress_total(self, project_id: int, flt: DatasetFilter) -> int:
        """How many rows progress is measured against: the planner's estimate where there
        is one (a ``count(*)`` is a full pass of its own: ~0.1 s per 200,000 rows), else the
        exact count. Only progress uses it; the manifest counts what was written."""
        if self._estimate is None:
            return self.count(project_id, flt)
        where, params = self._where(project_id, flt)
        return self._estimate(f"SELECT 1 FROM {FROM_EXAMPLES} WHERE {where}", params)

    def fast_source(
        self, project_id: int, flt: DatasetFilter, splitter: Splitter
    ) -> tuple[str, dict[str, Any]]:
        """``FROM … WHERE …`` for ``pgcopy`` (the whole filter in SQL)."""
        where, params = self._where(project_id, flt)
        return pgcopy.from_where(FROM_EXAMPLES, where, params, flt, splitter)

    def records(self, project_id: int, flt: DatasetFilter) -> Iterator[Record]:
        where, params = self._where(project_id, flt)
        columns = stream_columns(self.dialect)
        sql = f"SELECT {columns} FROM {FROM_EXAMPLES} WHERE {where} ORDER BY e.id"
        for row in self._run(sql, params):
            yield Record.from_row(row)

    def leakage(self, project_id: int, flt: DatasetFilter, splitter: Splitter) -> dict[str, Any]:
        """Pairs of examples that are the same or near-duplicate content yet sit in different
        splits: those sharing a cluster, and those sharing an exact normalised content hash
        across clusters (an example without a cluster is a split key of its own).

        First the hashes of more than one prediction of the project (the prediction table
        alone: one example per prediction, so no other hash can be shared), then which of
        them more than one split key holds (one hashed aggregate, no sort of the hashes),
        then the examples of only those hashes, counted per split key."""
        where, params = self._where(project_id, flt)
        examples = f"FROM {FROM_EXAMPLES} WHERE {where} AND p.content_hash IN "
        shared_sql = (
            "SELECT content_hash FROM prediction WHERE project_id = :project_id "
            "AND content_hash IS NOT NULL GROUP BY content_hash HAVING count(*) > 1"
        )
        spanning_sql = (
            "SELECT p.content_hash {examples} ({shared}) GROUP BY p.content_hash "
            "HAVING count(*) > 1 AND "
            "(min(e.cluster_id) < max(e.cluster_id) OR count(*) > count(e.cluster_id))"
        )
        groups_sql = (
            "SELECT p.content_hash, e.cluster_id, min(e.id), count(*) {examples} ({spanning}) "
            "GROUP BY p.content_hash, e.cluster_id, CASE WHEN e.cluster_id IS NULL THEN e.id END"
        )
        if self.dialect == "postgresql":  # step by step: most builds stop at the first
            # Grouped by a 64-bit hash of the hash (half the memory and time of the text:
            # 1.9-2.6 s -> 1.2-1.35 s per 1,000,000 predictions); a collision only adds a
            # candidate, which the exact grouping of the next step drops.
            keys_sql = (
                "SELECT hashtextextended(content_hash, 0) FROM prediction "
                "WHERE project_id = :project_id AND content_hash IS NOT NULL "
                "GROUP BY 1 HAVING count(*) > 1"
            )
            project = {"project_id": project_id}
            keys = [k for (k,) in self._run(keys_sql, project)]
            shared = []
            if keys:
                sql = (
                    "SELECT DISTINCT content_hash FROM prediction WHERE project_id = :project_id "
                    "AND hashtextextended(content_hash, 0) IN (SELECT unnest(:keys::bigint[]))"
                )
                shared = [h for (h,) in self._run(sql, {**project, "keys": keys})]
            hashes = []
            if shared:
                sql = spanning_sql.format(
                    examples=examples, shared="SELECT unnest(:shared::text[])"
                )
                hashes = [h for (h,) in self._run(sql, {**params, "shared": shared})]
            spanning, params = "SELECT unnest(:spanning::text[])", {**params, "spanning": hashes}
        else:
            spanning = spanning_sql.format(examples=examples, shared=shared_sql)
            hashes = [h for (h,) in self._run(spanning, params)]
        groups: dict[str, dict[str, int]] = {}
        if hashes:
            sql = groups_sql.format(examples=examples, spanning=spanning)
            for content_hash, cluster_id, first_id, count in self._run(sql, params):
                split = splitter(cluster_id, first_id)
                groups.setdefault(content_hash, {}).setdefault(split, 0)
                groups[content_hash][split] += count
        pairs = sum(_cross_pairs(list(g.values())) for g in groups.values())
        return {
            "method": "split is a function of the cluster id (near-duplicates share one); "
            "exact duplicates by normalised content hash checked across clusters",
            "cross_split_pairs": pairs,
            "duplicate_groups_across_clusters": len(groups),
        }


def _cross_pairs(counts: list[int]) -> int:
    total = sum(counts)
    return (total * total - sum(c * c for c in counts)) // 2


@contextmanager
def snapshot(engine: Engine) -> Iterator[Snapshot]:
    if is_sqlite(engine):
        with _sqlite_snapshot(engine) as snap:
            yield snap
    else:
        with _postgres_snapshot(engine) as snap:
            yield snap


@contextmanager
def _postgres_snapshot(engine: Engine) -> Iterator[Snapshot]:
    with _postgres_read(engine) as driver:
        run = _cursor_rows(driver)

        def copy(sql: str, params: dict[str, Any]) -> Iterator[bytes]:
            driver.execute(HASH_MEM)
            return copy_rows(driver, sql, params)

        def estimate(sql: str, params: dict[str, Any]) -> int:
            with driver.cursor() as cursor:
                cursor.execute(_pyformat(f"EXPLAIN (FORMAT JSON) {sql}"), params)
                plan = cursor.fetchone()[0]
            if isinstance(plan, str):
                plan = orjson.loads(plan)
            return max(int(plan[0]["Plan"]["Plan Rows"]), 1)

        def beside() -> AbstractContextManager[Snapshot]:
            # Exported here, in the snapshot's thread (its connection is not shared); valid
            # while this transaction lasts, and ``alongside`` waits before it ends.
            snapshot_id = driver.execute("SELECT pg_export_snapshot()").fetchone()[0]
            return _imported_snapshot(engine, snapshot_id)

        read = ArrowReader(engine, driver)
        try:
            yield Snapshot("postgresql", run, copy, estimate, read, beside)
        finally:
            read.close()


@contextmanager
def _imported_snapshot(engine: Engine, snapshot_id: str) -> Iterator[Snapshot]:
    with _postgres_read(engine, snapshot_id) as driver:
        yield Snapshot("postgresql", _cursor_rows(driver))


@contextmanager
def _postgres_read(engine: Engine, snapshot_id: str | None = None) -> Iterator[Any]:
    """A read-only REPEATABLE READ transaction (importing ``snapshot_id`` if given); its
    psycopg connection."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            if snapshot_id is not None:
                connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
            # Every cursor here is read to the end: plan for all rows, not the first few
            # (a server-side cursor otherwise gets nested loops over indexes).
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            yield connection.connection.driver_connection


def _cursor_rows(driver: Any) -> Callable[[str, dict[str, Any]], Iterator[tuple]]:
    def run(sql: str, params: dict[str, Any]) -> Iterator[tuple]:
        # psycopg's server-side cursor directly: SQLAlchemy rows cost ~1 µs each.
        with driver.cursor(name=f"snapshot_{next(_names)}") as rows:
            rows.itersize = FETCH
            rows.execute(_pyformat(sql), params)
            while batch := rows.fetchmany(FETCH):
                yield from batch

    return run


def copy_rows(driver: Any, sql: str, params: dict[str, Any]) -> Iterator[bytes]:
    """The rows of ``COPY … TO STDOUT`` straight from libpq (psycopg's ``Copy`` iterator
    costs ~1 µs a row more). Parameters are merged client-side, as ``cursor.copy`` does.
    Stopping early (an error while writing) cancels the query and drains the connection."""
    query = psycopg.ClientCursor(driver).mogrify(_pyformat(sql), params)
    pgconn = driver.pgconn
    pgconn.send_query(query.encode(driver.info.encoding))
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        while pgconn.get_result() is not None:
            pass
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
        raise psycopg.ProgrammingError("expected COPY TO STDOUT")
    get = pgconn.get_copy_data
    finished = False
    try:
        while True:
            size, data = get(0)
            if size < 0:
                finished = True
                break
            yield data
    finally:
        if not finished:
            pgconn.get_cancel().cancel()
            while get(0)[0] >= 0:
                pass
        errors = []
        while (result := pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                errors.append(result)
        if errors and finished:
            raise psycopg.errors.error_from_result(errors[0], encoding=driver.info.encoding)


class ArrowReader:
    """Queries of the snapshot read as Arrow record batches by ADBC: binary ``COPY`` parsed
    in C++, no Python per row (libpq hands over one message per row). It runs on a second
    connection that imports the snapshot's transaction snapshot, so it sees exactly what
    every other query of the snapshot sees. Opened at the first read; parameters are merged
    client-side by psycopg. The low-level ADBC API: its DB-API module imports pandas."""

    # 4 MiB batches: at the driver's default 16 MiB a Parquet build peaked at 290 MiB (220).
    OPTIONS = {"adbc.postgresql.batch_size_hint_bytes": str(4 << 20)}

    def __init__(self, engine: Engine, driver: Any) -> None:
        self.engine, self.driver = engine, driver
        self.handles: tuple[Any, Any] | None = None  # (AdbcDatabase, AdbcConnection)

    def __call__(self, sql: str, params: dict[str, Any]) -> Iterator[pa.RecordBatch]:
        connection = self._connection()
        query = psycopg.ClientCursor(self.driver).mogrify(_pyformat(sql), params)
        self._update(HASH_MEM)
        statement = adbc.AdbcStatement(connection)
        try:
            statement.set_sql_query(query)
            statement.set_options(**self.OPTIONS)
            stream, _ = statement.execute_query()
            reader = pa.RecordBatchReader.from_stream(stream)
            try:
                yield from reader
            finally:
                reader.close()
        finally:
            statement.close()

    def _connection(self) -> Any:
        if self.handles is None:
            snapshot_id = self.driver.execute("SELECT pg_export_snapshot()").fetchone()[0]
            url = self.engine.url.set(drivername="postgresql")
            database = adbc_postgresql.connect(url.render_as_string(hide_password=False))
            self.handles = (database, adbc.AdbcConnection(database))
            self.handles[1].set_options(**{"adbc.connection.autocommit": "false"})
            self._update("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._update(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
        return self.handles[1]

    def _update(self, sql: str) -> None:
        assert self.handles is not None
        statement = adbc.AdbcStatement(self.handles[1])
        try:
            statement.set_sql_query(sql)
            statement.execute_update()
        finally:
            statement.close()

    def close(self) -> None:
        if self.handles is not None:
            database, connection = self.handles
            self.handles = None
            connection.close()
            database.close()


_names = itertools.count()


def _pyformat(sql: str) -> str:
    """``:name`` placeholders (our SQL) as psycopg's ``%(name)s``."""
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", sql.replace("%", "%%"))


@contextmanager
def _sqlite_snapshot(engine: Engine) -> Iterator[Snapshot]:
    # A deferred read transaction is a WAL snapshot and blocks no writer. The engine's
    # "begin" hook would take the write lock (BEGIN IMMEDIATE), so use the driver directly.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN DEFERRED")

        def run(sql: str, params: dict[str, Any]) -> Iterator[tuple]:
            rows = raw.cursor()
            rows.execute(sql, params)
            while batch := rows.fetchmany(FETCH):
                yield from batch

        yield Snapshot("sqlite", run)
        cursor.execute("ROLLBACK")
    finally:
        raw.close()


def build_pending(
    engine: Engine, data_dir: Path, send: Callable[[int, dict], None] | None = None
) -> int:
    """Build every pending version (the embedded worker's periodic job). Returns how many."""
    storage = LocalStorage.for_data_dir(data_dir)
    with transaction(engine) as session:
        ids = pending_version_ids(session)
    built = 0
    for version_id in ids:
        outcome = build_version(engine, storage, version_id)
        if outcome is not None:
            built += 1
            if send is not None and outcome.event is not None:
                send(version_id, outcome.event)
    return built
