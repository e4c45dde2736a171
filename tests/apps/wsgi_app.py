"""A Flask app as users deploy it under gunicorn: dictConfig logging, the WSGI middleware
around ``app.wsgi_app``, sink and policy from WIDE_LOGGING_* environment variables."""

from __future__ import annotations

import logging
import logging.config
import random
import time

from flask import Flask, Response, request, stream_with_context

from wide_logging import WideEventWSGIMiddleware, annotate

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "wide": {
                "class": "wide_logging.WideEventHandler",
                "level": "INFO",
                "service": "shop-web",
            }
        },
        "loggers": {"shop": {"handlers": ["wide"], "level": "INFO", "propagate": False}},
    }
)
log = logging.getLogger("shop")

app = Flask("shop")
app.wsgi_app = WideEventWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]


@app.get("/ok")
def ok() -> str:
    marker = request.headers.get("x-marker", "")
    annotate(marker=marker)
    log.info("start %s", marker)
    time.sleep(float(request.args.get("delay", "0")) or random.uniform(0, 0.005))
    log.info("end %s", marker)
    return marker


@app.get("/fail")
def fail() -> str:
    raise RuntimeError("planned failure")


@app.get("/export")
def export() -> Response:
    """A streamed body: three rows, 50 ms apart; the request ends with the last one."""

    def rows():  # type: ignore[no-untyped-def]
        for n in range(3):
            time.sleep(0.05)
            log.info("row %d", n)
            yield f"row {n}\n"

    return Response(stream_with_context(rows()), mimetype="text/plain")
