"""Client methods for logging predictions and sending feedback."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

PREDICTIONS_PER_REQUEST = 1000
EVENTS_PER_REQUEST = 500


class _Http(Protocol):
    def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...


class IngestMixin:
    """``log_predictions`` and ``send_feedback``; both batch and are safe to retry."""

    def log_predictions(
        self: _Http,
        predictions: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = PREDICTIONS_PER_REQUEST,
    ) -> list[dict[str, Any]]:
        """Log predictions (dicts with ``id``, ``input``, ``output``, …) in batches.

        Returns one ``{"id", "status", "token"}`` per prediction, in order: hand ``token`` to
        the widget. Re-logging the same id with the same content is a no-op (``unchanged``);
        different content raises ``ApiError`` (409) and stores nothing of that batch.
        """
        results: list[dict[str, Any]] = []
        for chunk in _chunks(predictions, min(batch_size, PREDICTIONS_PER_REQUEST)):
            answer = self._json("POST", "/api/v1/predictions", json={"predictions": chunk})
            results.extend(answer["predictions"])
        return results

    def log_prediction(self, prediction: Mapping[str, Any]) -> dict[str, Any]:
        """Log one prediction; returns ``{"id", "status", "token"}``."""
        return self.log_predictions([prediction])[0]

    def send_feedback(
        self: _Http,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = EVENTS_PER_REQUEST,
    ) -> list[dict[str, Any]]:
        """Send feedback events (``prediction``, ``kind``, ``value``, …) in batches.

        Events without an ``id`` get a random UUID before the first attempt, so retries are
        idempotent. Returns one ``{"id", "status", "reason"?, "errors"?}`` per event, in
        order; ``status`` is ``accepted``, ``duplicate`` or ``rejected``.
        """
        with_ids = ({"id": str(uuid.uuid4()), **event} for event in events)
        results: list[dict[str, Any]] = []
        for chunk in _chunks(with_ids, min(batch_size, EVENTS_PER_REQUEST)):
            answer = self._json("POST", "/api/v1/feedback", json={"events": chunk})
            results.extend(answer["results"])
        return results


def _chunks(items: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(_plain(item))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _jsonable(value) for key, value in item.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
