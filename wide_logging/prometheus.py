"""Prometheus exposition of ``wide_logging.metrics`` (needs the ``prometheus`` extra).

    from wide_logging.prometheus import metrics_asgi_app
    app.mount("/metrics", metrics_asgi_app())          # Starlette / FastAPI

    from wide_logging.prometheus import metrics_wsgi_app
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": metrics_wsgi_app()})  # Flask

Every family of :data:`wide_logging.metrics.FAMILIES` becomes ``wide_logging_<name>``
with its label. Numbers are read at scrape time, so nothing is counted twice and the
request path pays nothing for Prometheus.

Under gunicorn with several workers each process has its own numbers, and a scrape reaches
one of them. prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) only
aggregates its own metric objects, so :func:`start_multiprocess_sync` mirrors ours into such
objects every few seconds from a daemon thread; serve them with prometheus_client's
``MultiProcessCollector`` as its docs describe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import metrics
from ._errors import ConfigurationError

try:
    import prometheus_client
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "wide_logging.prometheus needs prometheus_client: pip install 'wide-logging[prometheus]'"
    raise ConfigurationError(msg) from exc

PREFIX = "wide_logging_"
_KEPT = next(f for f in metrics.FAMILIES if f.prefix == "events.kept")
_SAMPLED_OUT = next(f for f in metrics.FAMILIES if f.prefix == "events.sampled_out")


class WideLoggingCollector(Collector):
    """A prometheus_client collector that reads ``wide_logging.metrics.samples()``."""

    def collect(self) -> Iterator[Metric]:
        grouped: dict[metrics.Family, list[tuple[str | None, float]]] = {}
        for family, label, value in metrics.samples():
            grouped.setdefault(family, []).append((label, value))
        for family in metrics.FAMILIES:
            labels = [family.label] if family.label else []
            name = PREFIX + family.name
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                # prometheus_client appends "_total" to counter names itself
                metric = CounterMetricFamily(
                    name.removesuffix("_total"), family.help, labels=labels
                )
            else:
                metric = GaugeMetricFamily(name, family.help, labels=labels)
            # an unlabelled family always has a value (0 before anything happened)
            values = grouped.get(family) or ([] if family.label else [(None, 0.0)])
            for label, value in values:
                metric.add_metric([label] if label is not None else [], value)
            yield metric
        kept = dict(grouped.get(_KEPT, ())).get("normal", 0.0)
        dropped = dict(grouped.get(_SAMPLED_OUT, ())).get("normal", 0.0)
        if kept + dropped:
            yield GaugeMetricFamily(
                PREFIX + "normal_retention_ratio",
                "Share of normal traffic kept: kept / (kept + sampled out) of rule normal.",
                value=kept / (kept + dropped),
            )


_registered: set[int] = set()
_register_lock = threading.Lock()


def register(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Add our collector to ``registry`` (default: prometheus_client's global one), once."""
    registry = prometheus_client.REGISTRY if registry is None else registry
    with _register_lock:
        if id(registry) not in _registered:
            registry.register(WideLoggingCollector())
            _registered.add(id(registry))
    return registry


def metrics_asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving ``/metrics`` text (mount it in Starlette/FastAPI)."""
    return prometheus_client.make_asgi_app(register(registry))


def metrics_wsgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app serving ``/metrics`` text (Flask, Django, any WSGI server)."""
    return prometheus_client.make_wsgi_app(register(registry))


class _MultiprocessMirror:
    """Copies our samples into prometheus_client metric objects, which in multiprocess
    mode land in per-process files that ``MultiProcessCollector`` adds up."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._objects: dict[metrics.Family, Any] = {}
        self._last: dict[tuple[metrics.Family, str | None], float] = {}
        for family in metrics.FAMILIES:
            labels = [family.label] if family.label else []
            name = PREFIX + family.name
            if family.kind == "counter":
                self._objects[family] = prometheus_client.Counter(
                    name.removesuffix("_total"), family.help, labels, registry=registry
                )
            else:
                self._objects[family] = prometheus_client.Gauge(
                    name, family.help, labels, registry=registry, multiprocess_mode="livesum"
                )

    def sync(self) -> None:
        for family, label, value in metrics.samples():
            target = self._objects[family]
            if family.label:
                target = target.labels(label)
            if family.kind == "counter":
                previous = self._last.get((family, label), 0.0)
                if value > previous:
                    target.inc(value - previous)
                self._last[(family, label)] = value
            else:
                target.set(value)


def start_multiprocess_sync(
    interval: float = 5.0, registry: CollectorRegistry | None = None
) -> threading.Event:
    """Mirror this process's numbers into multiprocess-mode metrics every ``interval`` s.

    Call it in each worker (gunicorn's ``post_fork`` hook). Returns an event that stops
    the mirroring thread when set.
    """
    if interval <= 0:
        msg = f"interval must be > 0 seconds, got {interval!r}"
        raise ConfigurationError(msg)
    mirror = _MultiprocessMirror(registry)
    stop = threading.Event()

    def run() -> None:
        while True:
            mirror.sync()
            if stop.wait(interval):
                mirror.sync()
                return

    threading.Thread(target=run, name="wide_logging.prometheus", daemon=True).start()
    return stop
