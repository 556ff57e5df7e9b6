"""Pydantic request and response models of the JSON API, one module per feature.

The same models validate requests and generate the OpenAPI document, so the two cannot
drift apart. ``common`` holds what every feature shares (problem documents, field errors).
"""
