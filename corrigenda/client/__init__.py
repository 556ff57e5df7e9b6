"""The Python client: ``Client(base_url, secret_key)``.

Ingestion methods live in ``ingest.py``, dataset methods in ``datasets.py``; both build on
the HTTP plumbing (retries, errors) in ``http.py``.
"""

from .datasets import DatasetsMixin
from .http import ApiError, HttpClient
from .ingest import IngestMixin


class Client(IngestMixin, DatasetsMixin, HttpClient):
    """Talks to a Corrigenda server with a project's secret key."""


__all__ = ["ApiError", "Client"]
