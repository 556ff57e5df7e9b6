"""The metrics JSON API through the real app."""

from __future__ import annotations

import pytest


def test_metrics_api_returns_the_figures(client, known) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        "/api/v1/projects/ka/metrics?segment=locale:en",
        headers={"Authorization": f"Bearer {known['sk']}"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["filters"]["segment"] == "locale:en"
    assert body["overall"]["shown"] == 3
    assert body["requirement"]["status"] == "not_yet_known"
    everything = client.get(
        "/api/v1/projects/ka/metrics", headers={"Authorization": f"Bearer {known['sk']}"}
    ).get_json()
    assert everything["overall"]["override_rate"]["k"] == 2
    assert everything["shadow"][0]["candidate"] == "v2-cand"


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("from=yesterday", "/from"),
        ("segment=locale", "/segment"),
        ("granularity=hour", "/granularity"),
        ("from=2025-03-05&to=2025-03-01", "/from"),
    ],
)
def test_metrics_api_names_the_bad_filter(client, known, query, path) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/api/v1/projects/ka/metrics?{query}", headers={"Authorization": f"Bearer {known['sk']}"}
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["path"] == path


def test_metrics_api_needs_the_projects_secret_key(client, known) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/projects/ka/metrics").status_code == 401
    publishable = {"Authorization": f"Bearer {known['pk']}"}
    assert client.get("/api/v1/projects/ka/metrics", headers=publishable).status_code == 403
    other = client.get(
        "/api/v1/projects/zz/metrics", headers={"Authorization": f"Bearer {known['sk']}"}
    )
    assert other.status_code == 404


def test_metrics_endpoint_is_in_the_openapi_document(client, known) -> None:  # type: ignore[no-untyped-def]
    from openapi_spec_validator import validate

    from webapp.api.metrics import MetricsReport

    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)
    operation = doc["paths"]["/projects/{slug}/metrics"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"slug", "from", "to", "model_version", "segment", "granularity"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MetricsReport"
    }
    assert "MetricsReport" in doc["components"]["schemas"]
    body = client.get(
        "/api/v1/projects/ka/metrics", headers={"Authorization": f"Bearer {known['sk']}"}
    ).get_json()
    MetricsReport.model_validate(body)  # the live answer has the documented shape
