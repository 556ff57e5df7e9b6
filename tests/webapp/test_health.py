from __future__ import annotations

from pathlib import Path

from tests.conftest import make_test_settings
from webapp import create_app


def test_healthz_answers_ok(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_database_and_broker(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/readyz").get_json()
    assert body["checks"] == {"database": "ok", "broker": "not configured"}


def test_readyz_names_the_unreachable_parts(tmp_path: Path) -> None:
    settings = make_test_settings(
        "postgresql://nobody@127.0.0.1:1/none", tmp_path, redis_url="redis://127.0.0.1:1/0"
    )
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"].startswith("unreachable")
    assert checks["broker"].startswith("unreachable")
