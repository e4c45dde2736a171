"""``mongodb://`` / ``mongodb+srv://``: events inserted into a collection, idempotently.

Each event becomes a document with ``_id = event_id`` and ``timestamp`` as a BSON date (so
range queries and a TTL index work). A batch is one ``insert_many(ordered=False)``: when a
retried or replayed batch meets documents that are already there, the duplicate-key errors
(code 11000) are success — every other write error fails the batch.

The client is created lazily, in the writer thread, so no MongoClient exists before a
fork (pymongo warns about that), and it is dropped in a forked child.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from .._errors import ConfigurationError
from .._secrets import without_secret_parts
from .._urls import mask_url
from ..typing import FailureKind, RejectedEvents
from ._url import non_empty, non_negative_int, parse_options, positive_int, split_options

try:
    import pymongo
    from bson.errors import InvalidDocument
    from pymongo.errors import (
        AutoReconnect,
        BulkWriteError,
        DocumentTooLarge,
        ExecutionTimeout,
        NetworkTimeout,
        OperationFailure,
        PyMongoError,
        ServerSelectionTimeoutError,
        WTimeoutError,
    )
    from pymongo.errors import ConfigurationError as MongoConfigurationError
    from pymongo.uri_parser import parse_uri
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "the mongodb:// sink needs pymongo: pip install 'wide-logging[mongo]'"
    raise ConfigurationError(msg) from exc

_internal = logging.getLogger("wide_logging.internal")

DEFAULT_DATABASE = "wide_logging"
DEFAULT_COLLECTION = "events"
DUPLICATE_KEY = 11000
#: Per-document write errors that say nothing about the document: the server was busy,
#: stepping down or shutting down. The whole batch is retried (duplicates are then fine).
_TRANSIENT_CODES = frozenset(
    {6, 7, 50, 64, 89, 91, 112, 133, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
#: The indexes most queries over wide events need (dotted paths, MongoDB dot notation).
INDEXES = ("timestamp", "error.type", "http.route", "request_id")
_INDEX_RETRY_SECONDS = 300.0

_OPTIONS: dict[str, Callable[[str], Any]] = {
    "collection": non_empty,
    "retention_days": non_negative_int,
    "timeout_ms": positive_int,
}


def to_document(data: bytes) -> dict[str, Any]:
    """One encoded event as the document stored: ``_id`` and a BSON-date ``timestamp``."""
    document: dict[str, Any] = orjson.loads(data)
    if "event_id" in document:
        document["_id"] = document["event_id"]
    stamp = document.get("timestamp")
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):  # else kept as the string it was
            document["timestamp"] = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return document


class MongoSink:
    """Options from the URL or keywords (keywords win): database from the URL path (default
    ``wide_logging``), ``collection`` (``events``), ``retention_days`` (a TTL index on
    ``timestamp``; 0 or absent: keep forever), ``timeout_ms`` (server selection, connect and
    socket timeouts unless the URL sets its own; default 5000).
    """

    def __init__(self, url: str, **options: Any) -> None:

        clean_url, parsed = split_options(url, _OPTIONS)
        parsed.update(parse_options(options, {**_OPTIONS, "database": non_empty}, "mongodb"))
        try:
            if not urlsplit(clean_url).netloc:
                msg = "a mongodb URL needs a host, as in mongodb://mongo:27017/logs"
                raise ValueError(msg)
            uri = parse_uri(clean_url) if clean_url.startswith("mongodb://") else {}
        except (MongoConfigurationError, ValueError) as exc:
            msg = f"invalid mongodb URL {mask_url(url)!r}: {without_secret_parts(str(exc), url)}"
            raise ConfigurationError(msg) from None
        self.database: str = parsed.get("database") or uri.get("database") or DEFAULT_DATABASE
        self.collection: str = parsed.get("collection", DEFAULT_COLLECTION)
        self.retention_days: int = parsed.get("retention_days", 0)
        self.timeout_ms: int = parsed.get("timeout_ms", 5000)
        self._url = clean_url
        self._uri_options = {key.lower() for key in (uri.get("options") or {})}
        self._client: Any = None
        self._indexes_ready = False
        self._indexes_next_try = 0.0
        self._lock = threading.Lock()
        self.name = f"{mask_url(clean_url)}#{self.database}.{self.collection}"

    def open_collection(self) -> Any:
        """The pymongo collection events go to (connecting on first use)."""
        if self._client is None:
            timeouts: dict[str, Any] = {
                key: self.timeout_ms
                for key in ("serverSelectionTimeoutMS", "connectTimeoutMS", "socketTimeoutMS")
                if key.lower() not in self._uri_options  # the URL's own settings win
            }
            self._client = pymongo.MongoClient(self._url, **timeouts)
        return self._client[self.database][self.collection]

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            collection = self.open_collection()
            self._ensure_indexes(collection)
            documents = [to_document(data) for data in batch]
            try:
                collection.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                # Unordered: every document not named in writeErrors was stored.
                errors = exc.details.get("writeErrors", [])
                if exc.details.get("writeConcernErrors") or any(
                    e.get("code") in _TRANSIENT_CODES for e in errors
                ):
                    raise  # not about the documents: retry the batch
                refused = {
                    int(e.get("index", -1)): f"MongoDB error {e.get('code')}: {e.get('errmsg')}"
                    for e in errors
                    if e.get("code") != DUPLICATE_KEY  # duplicates mean "already stored"
                }
                if refused:
                    raise RejectedEvents(refused) from None

    def _ensure_indexes(self, collection: Any) -> None:
        """Create the documented indexes once; a failure is logged and tried again later."""
        if self._indexes_ready or time.monotonic() < self._indexes_next_try:
            return
        try:
            for path in INDEXES:
                options: dict[str, Any] = {"name": f"wide_{path}"}
                if path == "timestamp" and self.retention_days:
                    options = {
                        "name": "wide_timestamp_ttl",
                        "expireAfterSeconds": self.retention_days * 86400,
                    }
                collection.create_index(path, **options)
        except OperationFailure as exc:  # e.g. an index of that name with other options
            self._indexes_next_try = time.monotonic() + _INDEX_RETRY_SECONDS
            _internal.warning("could not create indexes on %s: %s", self.name, exc)
            return
        self._indexes_ready = True

    def failure_kind(self, error: BaseException) -> FailureKind | None:
        if isinstance(
            error, (NetworkTimeout, ExecutionTimeout, WTimeoutError, ServerSelectionTimeoutError)
        ):
            return "timeout"
        if isinstance(error, (InvalidDocument, DocumentTooLarge)):
            return "content"  # one document pymongo cannot encode: find it, keep the rest
        if isinstance(error, (AutoReconnect, OperationFailure, PyMongoError)):
            return "unavailable"
        return None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def after_fork(self) -> None:
        # The parent's client (its sockets and monitor threads) is not ours to use.
        self._client = None
        self._lock = threading.Lock()
        self._indexes_ready = False
        self._indexes_next_try = 0.0
