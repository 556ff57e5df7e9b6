"""Dataset versions: filters, leak-free splits, export formats, manifest, datasheet, build."""

from .build import (
    BuildOutcome,
    DatasetRequestError,
    build_pending,
    build_version,
    create_version,
    pending_version_ids,
    snapshot,
    version_prefix,
)
from .filters import DatasetFilter
from .formats import FORMATS
from .records import Record
from .splits import Splitter
from .storage import LocalStorage

__all__ = [
    "FORMATS",
    "BuildOutcome",
    "DatasetFilter",
    "DatasetRequestError",
    "LocalStorage",
    "Record",
    "Splitter",
    "build_pending",
    "build_version",
    "create_version",
    "pending_version_ids",
    "snapshot",
    "version_prefix",
]
