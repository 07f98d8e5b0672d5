"""Transport: the background uploader and the exporters it ships batches through."""

from .exporters import (
    Exporter,
    ExportResult,
    HTTPExporter,
    InMemoryExporter,
    JSONLExporter,
    parse_retry_after,
)
from .uploader import Uploader

__all__ = [
    "ExportResult",
    "Exporter",
    "HTTPExporter",
    "InMemoryExporter",
    "JSONLExporter",
    "Uploader",
    "parse_retry_after",
]
