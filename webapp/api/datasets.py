"""Dataset versions: create (202, built by a worker), list, get, download, delete."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, send_file, url_for
from pydantic import ValidationError
from sqlmodel import Session, col, select

from corrigenda.audit import record_audit
from corrigenda.datasets import DatasetRequestError, LocalStorage, create_version, version_prefix
from corrigenda.models import DatasetVersion
from corrigenda.schemas.common import field_errors
from corrigenda.schemas.datasets import DatasetCreate, DatasetFile, DatasetList, DatasetPublic

from ..extensions import db_transaction, get_settings, read_session
from .auth import require_key
from .blueprint import bp
from .body import json_body
from .openapi import Operation, document
from .problems import ApiProblem, json_response

BASE = "/projects/<slug>/datasets"


def _project_slug(slug: str) -> None:
    # A key belongs to one project; another project's slug is "not found", not "forbidden",
    # so keys cannot probe which projects exist.
    if slug != g.project.slug:
        raise ApiProblem(404, "Project not found", f"this key has no project {slug!r}")


def storage() -> LocalStorage:
    return LocalStorage.for_data_dir(get_settings().data_dir)


@bp.post(BASE)
@require_key("secret")
def create_dataset(slug: str) -> Response:
    """Queue a new dataset version; answer 202 with the URL to poll."""
    _project_slug(slug)
    data = json_body().data
    try:
        request_ = DatasetCreate.model_validate(data)
    except ValidationError as exc:
        raise _invalid(field_errors(exc, data)) from exc
    try:
        with db_transaction() as session:
            version = create_version(
                session, project=g.project, flt=request_.filter, formats=request_.formats
            )
    except DatasetRequestError as exc:
        raise _invalid([{"path": exc.field, "message": str(exc)}]) from exc
    storage()  # the in-process worker builds into this app's data directory
    enqueue_build(version.id)  # after commit, id only
    body = public(version)
    return json_response(body, 202, {"Location": body["url"]})


def _invalid(errors: list[dict[str, str]]) -> ApiProblem:
    return ApiProblem(
        422, "Invalid dataset request", "nothing was created", errors, type="validation"
    )


def enqueue_build(version_id: int) -> None:
    """Hand the build to Celery if configured, else wake the in-process worker. A lost
    message is not lost work: pending versions are swept by the periodic job."""
    from workers import embedded

    celery = current_app.extensions.get("corrigenda.celery")
    if celery is None:
        embedded.wake()
        return
    try:
        celery.send_task("corrigenda.build_dataset", args=[version_id], retry=False)
    except Exception:  # noqa: BLE001 - the pending-version sweep picks it up
        current_app.logger.warning("broker unavailable; dataset %s left to the sweep", version_id)


@bp.get(BASE)
@require_key("secret")
def list_datasets(slug: str) -> Response:
    _project_slug(slug)
    with read_session() as session:
        versions = session.exec(
            select(DatasetVersion)
            .where(DatasetVersion.project_id == g.project.id, DatasetVersion.status != "deleted")
            .order_by(col(DatasetVersion.number).desc())
        ).all()
    return json_response({"datasets": [public(v) for v in versions]})


@bp.get(f"{BASE}/<int:number>")
@require_key("secret")
def get_dataset(slug: str, number: int) -> Response:
    _project_slug(slug)
    with read_session() as session:
        version = _version(session, number)
    return json_response(public(version, with_files=True))


@bp.get(f"{BASE}/<int:number>/manifest")
@require_key("secret")
def get_manifest(slug: str, number: int) -> Response:
    _project_slug(slug)
    with read_session() as session:
        version = _ready(_version(session, number))
    return json_response(version.manifest)


@bp.get(f"{BASE}/<int:number>/datasheet")
@require_key("secret")
def get_datasheet(slug: str, number: int) -> Response:
    _project_slug(slug)
    with read_session() as session:
        version = _ready(_version(session, number))
    return Response(version.datasheet, mimetype="text/markdown")


@bp.get(f"{BASE}/<int:number>/files/<path:name>")
@require_key("secret")
def download_file(slug: str, number: int, name: str) -> Response:
    """One file of a ready version: strong ETag (its sha256), conditional and Range requests."""
    _project_slug(slug)
    with read_session() as session:
        version = _ready(_version(session, number))
    entry = next((f for f in version.manifest["files"] if f["path"] == name), None)
    if entry is None:
        raise ApiProblem(404, "File not found", f"version {number} has no file {name!r}")
    path = storage().path(version_prefix(slug, number), name)
    response = send_file(
        path,
        mimetype=_mimetype(name),
        as_attachment=True,
        download_name=name.replace("/", "-"),
        etag=entry["sha256"],
        conditional=True,
        max_age=31536000,
    )
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    response.headers["Digest"] = f"sha-256={entry['sha256']}"
    return response


def _mimetype(name: str) -> str:
    for suffix, mimetype in (
        (".jsonl", "application/x-ndjson"),
        (".csv", "text/csv"),
        (".parquet", "application/vnd.apache.parquet"),
        (".json", "application/json"),
        (".md", "text/markdown"),
        (".xml", "application/xml"),
    ):
        if name.endswith(suffix):
            return mimetype
    return "application/octet-stream"


@bp.delete(f"{BASE}/<int:number>")
@require_key("secret")
def delete_dataset(slug: str, number: int) -> Response:
    """Delete a version's files (admin: a secret key is the API's admin credential)."""
    _project_slug(slug)
    with db_transaction() as session:
        version = _version(session, number)
        if version.status == "building":
            raise ApiProblem(409, "Version is building", "wait until it is ready or failed")
        before = {
            "status": version.status,
            "manifest_files": len((version.manifest or {}).get("files", [])),
        }
        version.status = "deleted"
        record_audit(
            session,
            actor=f"api_key:{g.api_key.prefix}",
            action="dataset.delete",
            object_type="dataset_version",
            object_id=version.id,
            project_id=g.project.id,
            before=before,
            after={"status": "deleted", "number": number},
        )
    storage().delete(version_prefix(slug, number))  # after commit: the row says "deleted" first
    return Response(status=204)


def _version(session: Session, number: int) -> DatasetVersion:
    version = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.project_id == g.project.id, DatasetVersion.number == number
        )
    ).first()
    if version is None or version.status == "deleted":
        raise ApiProblem(404, "Dataset version not found", f"no version {number} in this project")
    return version


def _ready(version: DatasetVersion) -> DatasetVersion:
    if version.status != "ready" or version.manifest is None:
        raise ApiProblem(
            409,
            "Version not ready",
            f"version {version.number} is {version.status}; poll its URL until status is ready",
            type="not-ready",
        )
    return version


def public(version: DatasetVersion, *, with_files: bool = False) -> dict[str, Any]:
    slug = g.project.slug
    url = url_for("api.get_dataset", slug=slug, number=version.number)
    body = DatasetPublic(
        number=version.number,
        status=version.status,
        progress=version.progress,
        formats=version.formats,
        filter=version.filter,
        split_counts=version.split_counts,
        created_at=version.created_at,
        finished_at=version.finished_at,
        error=version.error,
        superseded=(version.manifest or {}).get("superseded"),
        url=url,
    )
    if version.status == "ready" and version.manifest:
        body.manifest_url = f"{url}/manifest"
        body.datasheet_url = f"{url}/datasheet"
        if with_files:
            body.files = [
                DatasetFile(**f, url=f"{url}/files/{f['path']}") for f in version.manifest["files"]
            ]
    return body.model_dump(mode="json")


SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}
for _op in (
    Operation(
        BASE,
        "post",
        "Create a dataset version (built asynchronously)",
        ("secret",),
        request=[DatasetCreate],
        responses={202: ("queued; poll the Location URL", DatasetPublic)},
        parameters=[SLUG],
    ),
    Operation(
        BASE,
        "get",
        "List dataset versions",
        ("secret",),
        responses={200: ("versions, newest first", DatasetList)},
        parameters=[SLUG],
    ),
    Operation(
        f"{BASE}/<number>",
        "get",
        "A version with its status, progress and files",
        ("secret",),
        responses={200: ("the version", DatasetPublic)},
        parameters=[SLUG, NUMBER],
        errors=(401, 403, 404),
    ),
    Operation(
        f"{BASE}/<number>/manifest",
        "get",
        "The manifest (checksums, counts, filter…)",
        ("secret",),
        responses={200: ("manifest JSON", None)},
        parameters=[SLUG, NUMBER],
        errors=(401, 403, 404, 409),
    ),
    Operation(
        f"{BASE}/<number>/datasheet",
        "get",
        "The datasheet (Markdown)",
        ("secret",),
        responses={200: ("text/markdown", None)},
        parameters=[SLUG, NUMBER],
        errors=(401, 403, 404, 409),
    ),
    Operation(
        f"{BASE}/<number>/files/<path>",
        "get",
        "Download one file (strong ETag = sha256; Range and If-None-Match supported)",
        ("secret",),
        responses={200: ("the file", None), 206: ("a byte range", None), 304: ("unchanged", None)},
        parameters=[SLUG, NUMBER, {**NUMBER, "name": "path", "schema": {"type": "string"}}],
        errors=(401, 403, 404, 409),
    ),
    Operation(
        f"{BASE}/<number>",
        "delete",
        "Delete a version's files (audit-logged)",
        ("secret",),
        responses={204: ("deleted", None)},
        parameters=[SLUG, NUMBER],
        errors=(401, 403, 404, 409),
    ),
):
    document(_op)
