"""The OpenAPI document is valid 3.1, generated from the validating models, and readable."""

from __future__ import annotations

from openapi_spec_validator import validate

from corrigenda.schemas.ingest import FeedbackEventIn, PredictionIn


def test_openapi_document_is_valid_and_matches_the_models(client) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    for model in (PredictionIn, FeedbackEventIn):
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields)
        assert schemas[model.__name__]["additionalProperties"] is False
    feedback = doc["paths"]["/feedback"]["post"]
    assert "422" in feedback["responses"] and "202" in feedback["responses"]
    problem = feedback["responses"]["422"]["content"]["application/problem+json"]
    assert problem["schema"]["$ref"].endswith("/Problem")


def test_docs_page_is_served_locally(client) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "POST /predictions" in html.replace("post", "POST") or "/predictions" in html
    assert "time_to_decision_ms" in html
    assert "<script src=" not in html and "cdn" not in html.lower()
