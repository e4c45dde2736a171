"""Secrets stay in, whatever shape they arrive in.

A table of secret-bearing inputs, each sent through a real Starlette app (or Flask, or a
log record outside any request), each marked with a unique string. After the events are
written, every place the package writes to is searched for the marks: the sink file and its
segments, the spool, the dead letters, stderr, the metrics snapshot, the Prometheus text
and the CLI's output.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from flask import Flask
from flask import request as flask_request
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from wide_logging import (
    WideEventHandler,
    WideEventMiddleware,
    WideEventWSGIMiddleware,
    annotate,
    mask_url,
    metrics,
)
from wide_logging._secrets import scrub_text
from wide_logging.prometheus import WideLoggingCollector
from wide_logging.serialize import REDACTED, Serializer
from wide_logging.tools.cli import main as cli

MARK = "SeCrEt"
log = logging.getLogger("app.secrets")


def secret(n: int) -> str:
    return f"{MARK}{n:03d}z"


# Each entry: what the app does with the secret s, inside a request (request is Starlette's).
Leak = Callable[[Request, str], Any]
CORPUS: dict[str, Leak] = {
    # dotted keys and configured names
    "dotted authorization": lambda r, s: annotate(
        **{"http.request.header.authorization": f"Bearer {s}"}
    ),
    "dotted cookie": lambda r, s: annotate(**{"http.request.header.cookie": f"sid={s}"}),
    "dotted set-cookie": lambda r, s: annotate(**{"http.response.header.set-cookie": s}),
    "dotted proxy-authorization": lambda r, s: annotate(
        **{"http.request.header.proxy-authorization": f"Basic {s}"}
    ),
    "configured key as a dotted part": lambda r, s: annotate(**{"user.session": s}),
    "configured key nested": lambda r, s: annotate(user={"id": 7, "session": s}),
    "configured key deep": lambda r, s: annotate(ctx={"a": {"b": {"session": {"v": s}}}}),
    # header lists
    "header list of pairs": lambda r, s: annotate(
        headers=[*r.headers.items(), ("authorization", f"Bearer {s}")]
    ),
    "dict items view": lambda r, s: annotate(headers={"cookie": s, "accept": "*/*"}.items()),
    "raw ASGI header byte pairs": lambda r, s: annotate(
        headers=[*r.scope["headers"], (b"authorization", f"Bearer {s}".encode())]
    ),
    "headers mapping": lambda r, s: annotate(headers=r.headers),
    "mixed-case header name": lambda r, s: annotate(headers={"X-Api-Key": s}),
    # names that were not on the default list
    "cookies": lambda r, s: annotate(cookies={"sid": s}),
    "auth": lambda r, s: annotate(auth=s),
    "pwd": lambda r, s: annotate(db={"pwd": s}),
    "passphrase": lambda r, s: annotate(passphrase=s),
    "session_id": lambda r, s: annotate(session_id=s),
    "jwt": lambda r, s: annotate(jwt=s),
    "bearer": lambda r, s: annotate(bearer=s),
    "dsn": lambda r, s: annotate(sentry={"dsn": s}),
    "signature": lambda r, s: annotate(webhook={"signature": s}),
    "private_key": lambda r, s: annotate(private_key=s),
    "client_secret": lambda r, s: annotate(oauth={"client_secret": s}),
    # secrets inside strings
    "userinfo in a log message": lambda r, s: log.info("connecting to postgres://app:%s@db/x", s),
    "token query in a log message": lambda r, s: log.info("GET https://api/x?token=%s&a=1", s),
    "password= in a log message": lambda r, s: log.warning("login user=bob password=%s", s),
    "api_key in an annotated string": lambda r, s: annotate(call=f"sent api_key={s} to vendor"),
    "sig in an annotated URL": lambda r, s: annotate(blob=f"https://x.blob/c/f?sv=1&sig={s}"),
    "httpx's request line": lambda r, s: log.info(
        'HTTP Request: GET http://api.local/v1?token=%s "HTTP/1.1 200 OK"', s
    ),
    "logged dict(request.headers)": lambda r, s: log.info(
        "headers: %s", {**dict(r.headers), "authorization": f"Bearer {s}"}
    ),
    "logged cookie dict": lambda r, s: log.info("got %s", {"cookie": f"a={s}; b=2"}),
    "annotate(url=str(request.url))": lambda r, s: annotate(url=f"{r.url}?token={s}"),
    "url.full with a secret query": lambda r, s: annotate(url={"full": f"https://h/p?api_key={s}"}),
    "exception message with a URL password": lambda r, s: _raise(
        ConnectionError(f"cannot reach redis://:{s}@cache:6379/0")
    ),
    "exception message with token=": lambda r, s: _raise(ValueError(f"bad request token={s}")),
    "exception note": lambda r, s: _raise(_with_note(RuntimeError("x"), f"used password={s}")),
    "logged error with a bearer token": lambda r, s: log.error("auth failed for Bearer %s", s),
    "JWT in a message": lambda r, s: log.info("session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx%s.sig", s),
    "Authorization header line": lambda r, s: log.info("raw: Authorization: Basic %s\r\n", s),
    "tuple repr": lambda r, s: log.info("%s", [("authorization", f"Bearer {s}")]),
    "bytes pair repr": lambda r, s: log.info("%s", [(b"cookie", s.encode())]),
    "JSON text": lambda r, s: log.info("body %s", json.dumps({"password": s, "user": "bob"})),
    "form body": lambda r, s: annotate(body=f"user=bob&passwd={s}&remember=1"),
    "path parameter": lambda r, s: None,  # the secret is in the path: see leak_path()
    "credentials in the path": lambda r, s: None,  # see leak_path()
    # shapes the first corpus missed (an attacker's pass found them)
    "hard-coded credentials in a source line": lambda r, s: _raise_from_source_holding(s),
    "dataclass repr": lambda r, s: annotate(login=Creds("bob", s)),
    "logfmt with a quoted value": lambda r, s: log.info('login password="%s" user=bob', s),
    "kwargs in a repr": lambda r, s: log.info("built Client(api_key=%r, retries=3)", s),
    "JSON inside a JSON string": lambda r, s: log.info(
        "%s", json.dumps({"body": json.dumps({"password": s})})
    ),
    "dict repr with a list value": lambda r, s: log.info("%s", {"token": [s, "x"]}),
    "dict repr with a dict value": lambda r, s: log.info("%s", {"credentials": {"k": s}}),
    "URL-encoded form field": lambda r, s: annotate(body=f"user%5Bpassword%5D={s}&x=1"),
    "header line without a space": lambda r, s: log.info("X-Api-Key:%s", s),
    "PHPSESSID": lambda r, s: annotate(query=f"PHPSESSID={s}&page=2"),
    "userinfo without a scheme": lambda r, s: log.info("connecting bob:%s@db:5432", s),
    "a URL password with a slash": lambda r, s: log.info("cache at redis://:ab/%s@h:6379/0", s),
    "XML element": lambda r, s: annotate(xml=f"<user><password>{s}</password></user>"),
    "PEM private key": lambda r, s: annotate(
        key=f"-----BEGIN PRIVATE KEY-----\nMIIE{s}\n-----END PRIVATE KEY-----"
    ),
    "name/value header objects (HAR)": lambda r, s: annotate(
        headers=[{"name": "X-Api-Key", "value": s}, {"name": "Accept", "value": "*/*"}]
    ),
    "namedtuple header pair": lambda r, s: annotate(headers=[Pair("authorization", s)]),
    "three-item header": lambda r, s: annotate(headers=[("cookie", s, "HttpOnly")]),
    "header name with its colon": lambda r, s: annotate(headers=[("Authorization:", s)]),
    "YAML value on the next line": lambda r, s: log.info("config:\npassword:\n  %s\n", s),
    "Django request.META": lambda r, s: annotate(meta={"HTTP_AUTHORIZATION": f"Basic {s}"}),
    "camelCase names": lambda r, s: annotate(cfg={"authHeader": s, "dbPwd": s}),
    "stack with a secret in source": lambda r, s: _raise_with_local_secret(s),
    # shapes found by an attacker's pass after the scan moved to kept events
    "a DSN as a dict key": lambda r, s: annotate(pools={f"postgres://app:{s}@db/app": 10}),
    "a dotted key holding a query": lambda r, s: annotate(**{f"cb./hook?access_token={s}": 1}),
    "SQL assignment across lines": lambda r, s: log.info("UPDATE u SET password =\n  '%s'", s),
    "name ending in a non-ASCII letter": lambda r, s: log.info("token_accès=%s", s),
    "HAR pair as a flat dict": lambda r, s: annotate(header={"name": "X-Api-Key", "value": s}),
    "HAR pair as extra fields": lambda r, s: log.info("x", extra={"key": "X-Api-Key", "value": s}),
    "HAR list printed": lambda r, s: log.info("sent %s", [{"name": "X-Api-Key", "value": s}]),
    "a lone header tuple": lambda r, s: annotate(header=("X-Api-Key", s)),
    "a bytearray header name": lambda r, s: annotate(h=[(bytearray(b"authorization"), s)]),
    "an exception's code": lambda r, s: _raise(_Coded(f"invalid_token:{s}")),
    "JSON with an escaped quote": lambda r, s: log.info(json.dumps({"password": f'Pa"{s}'})),
    "JSON in JSON, escaped quote": lambda r, s: log.info(
        json.dumps({"body": json.dumps({"token": f'x"{s}'})})
    ),
    "an object as the value in a repr": lambda r, s: log.info("%r", {"api_key": _Key(s)}),
    "a URL cut by max_string": lambda r, s: annotate(
        dump="x" * (8192 - 20) + f"postgres://app:{s}@db:5432/app"
    ),
    "a private key cut by max_string": lambda r, s: annotate(
        dump="x " * 3600 + f"-----BEGIN PRIVATE KEY-----\n{s * 300}\n-----END PRIVATE KEY-----"
    ),
    "an XML secret cut by max_string": lambda r, s: annotate(
        dump="x" * (8192 - 14) + f"<password>{s}</password>"
    ),
    "a datetime subclass's repr": lambda r, s: annotate(when=_AuditTime(2024, 1, 1, by=s)),
}


class _Coded(Exception):
    def __init__(self, code: str) -> None:
        super().__init__("refused")
        self.code = code


class _Key:
    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"ApiKey({self.value!r})"


class _AuditTime(datetime.datetime):
    by = ""

    def __new__(cls, *args: Any, by: str = "") -> _AuditTime:
        made = super().__new__(cls, *args)
        made.by = by
        return made

    def __repr__(self) -> str:
        return f"AuditTime({self.date()}, by='postgres://app:{self.by}@db')"


def _raise(exc: BaseException) -> None:
    raise exc


def _with_note(exc: BaseException, note: str) -> BaseException:
    exc.add_note(note)
    return exc


def _raise_with_local_secret(s: str) -> None:
    password = s  # noqa: F841 - the traceback shows this source line
    raise KeyError("password = " + s)


def leak_path(name: str, s: str) -> str:
    suffix = {
        "path parameter": f";jsessionid={s}",
        "credentials in the path": f";/proxy/https://bob:{s}@internal/x",
    }
    return f"/leak/{name}" + suffix.get(name, "")


@dataclasses.dataclass
class Creds:
    user: str
    password: str


class Pair(NamedTuple):
    name: str
    value: str


def _raise_from_source_holding(s: str) -> None:
    """A function whose source line holds the secret, as hard-coded credentials do: the
    stack shows that line."""
    import importlib.util
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as source:
        source.write(
            f'def connect():\n    raise ConnectionError("refused") from open("postgres://app:{s}@db/x")\n'
        )
    spec = importlib.util.spec_from_file_location("hardcoded", source.name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.connect()


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[WideEventHandler]:
    handler = WideEventHandler(
        sink=f"file:{tmp_path}/out/events.jsonl",
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        redact=["session"],
        flush_interval=0.05,
    )
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    handler.close()


def starlette_app() -> Starlette:
    async def leak(request: Request) -> PlainTextResponse:
        name, s = request.path_params["name"], request.headers["x-secret"]
        CORPUS[name.split(";")[0]](request, s)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/leak/{name:path}", leak)])
    app.add_middleware(WideEventMiddleware)
    return app


def everything_written(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> str:
    """Every byte the package put anywhere: files, stderr/stdout, metrics, Prometheus, CLI."""
    files = "".join(
        path.read_text(errors="replace") for path in sorted(tmp_path.rglob("*")) if path.is_file()
    )
    registry = CollectorRegistry()
    registry.register(WideLoggingCollector())
    prometheus_text = generate_latest(registry).decode()
    snapshot = json.dumps(metrics.snapshot(), default=str)
    cli_out = io.StringIO()
    if (tmp_path / "out").is_dir():
        with redirect_stdout(cli_out):
            cli(["incidents", "--source", f"file:{tmp_path}/out/events.jsonl"])
    captured = capfd.readouterr()
    return "\n".join(
        [files, prometheus_text, snapshot, cli_out.getvalue(), captured.out, captured.err]
    )


def test_the_corpus_has_at_least_forty_inputs() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_no_secret_reaches_any_output(
    name: str, handler: WideEventHandler, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    s = secret(sorted(CORPUS).index(name))
    with TestClient(starlette_app(), raise_server_exceptions=False) as client:
        client.get(leak_path(name, s), headers={"x-secret": s})
    assert handler.flush(10)
    events = [
        orjson.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_bytes().splitlines()
    ]
    assert any(e.get("kind") == "http.request" for e in events)  # the request was written
    written = everything_written(tmp_path, capfd)
    assert s not in written, f"{name}: the secret reached an output"


def test_flask_headers_object_is_redacted(
    handler: WideEventHandler, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    s = secret(900)
    app = Flask("secrets")

    @app.get("/")
    def index() -> str:
        annotate(headers=flask_request.headers, header_list=list(flask_request.headers))
        log.info("incoming %s", flask_request.headers)
        return "ok"

    app.wsgi_app = WideEventWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    response = app.test_client().get("/", headers={"Authorization": f"Bearer {s}", "Cookie": s})
    response.close()
    assert handler.flush(10)
    assert s not in everything_written(tmp_path, capfd)


def test_a_log_record_outside_requests_is_scrubbed(
    handler: WideEventHandler, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    s = secret(901)
    log.warning("nightly job used https://svc/api?access_token=%s", s)
    log.error("job failed with password=%s", s)
    assert handler.flush(10)
    assert s not in everything_written(tmp_path, capfd)


@pytest.mark.parametrize(
    "text",
    [
        "user bob@example.com bought 3 items",
        "https://registry.npmjs.org/@types/node",
        "GET /items?page=2&sort=price",
        "author: Jane; keys: 3",
        "{'plan': 'pro', 'seats': 4}",
        "Error: connection refused (attempt 3)",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Serializer().clean(text) == text


# -- sink URLs in our own messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("redis://user:p@ss@127.0.0.1:1/0", "p@ss"),
        ("redis://:plain@127.0.0.1:1/0", "plain"),
        ("rediss://default:s3cr3t@127.0.0.1:1/0?ssl_cert_reqs=none", "s3cr3t"),
        ("redis://tok%40en@127.0.0.1:1/0", "tok%40en"),
    ],
)
def test_sink_urls_are_masked_in_every_message_and_metric(
    url: str,
    hidden: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = WideEventHandler(
        sink=f"{url}{'&' if '?' in url else '?'}socket_timeout=0.2&connect_timeout=0.2",
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        max_retries=0,
        flush_interval=0.05,
    )
    logging.getLogger().addHandler(handler)  # the README's config: root -> only this handler
    try:
        handler.submit(handler.new_event(request_id="r-1"))
        assert handler.flush(10)
        assert handler.metrics.get("spooled.sink_failure") == 1  # the sink really failed
        written = everything_written(tmp_path, capfd) + caplog.text
        assert "failed after" in written  # the warning was logged...
        assert hidden not in written  # ...with the password masked
        assert "127.0.0.1" in written
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


@pytest.mark.parametrize(
    ("url", "pieces"),
    [
        ("redis://:pa/ss@127.0.0.1:1/0", ["pa/ss", "'pa'"]),  # redis-py: "... as 'pa'"
        ("mongodb://u:se/cret@h:notaport/db", ["se/cret", "cret"]),
        ("mongodb://u:pw@h/db?authMechanismProperties=AWS_SESSION_TOKEN:tok123", ["tok123"]),
    ],
)
def test_configuration_errors_about_a_url_never_show_its_secrets(
    url: str, pieces: list[str], tmp_path: Path
) -> None:
    try:
        WideEventHandler(sink=url, fallback=f"file:{tmp_path}/spool/events.jsonl")
    except Exception as exc:
        message = str(exc)
    else:  # a valid URL: what we print of it is its name
        message = "\n".join(link.sink.name for link in WideEventHandler(sink=url).pipeline.links)
    assert all(piece not in message for piece in pieces), message


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:p@ss@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pa/ss@host/0", "redis://:***@host/0"),
        ("redis://:pw@host/0", "redis://:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("https://registry.npmjs.org/@types/node", "https://registry.npmjs.org/@types/node"),
        (
            "mongodb://h/db?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:abc",
            "mongodb://h/db?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***",
        ),
        ("mongodb://u:p@h1,h2/db?tls=true", "mongodb://u:***@h1,h2/db?tls=true"),
        ("redis://h/0?password=x&stream=s", "redis://h/0?password=***&stream=s"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# -- properties ------------------------------------------------------------------------

_names = st.sampled_from(
    ["password", "api_key", "token", "secret", "authorization", "cookie", "pwd", "sig", "jwt"]
)
#: Secrets as they come: RFC 6750 token characters (and so also URL-safe, header-safe).
_values = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~",
    min_size=6,
    max_size=40,
)
_shapes = st.sampled_from(
    [
        "{name}={value}",
        "?{name}={value}&x=1",
        "{name}: {value}",
        "'{name}': '{value}'",
        '"{name}": "{value}"',
        "('{name}', '{value}')",
        "https://user:{value}@host/p",
        "Bearer {value}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(_names, _values, _shapes, st.text(max_size=30), st.text(max_size=30))
def test_a_named_secret_in_any_surrounding_text_is_masked(
    name: str, value: str, shape: str, before: str, after: str
) -> None:
    # (a "secret" that is part of the masked text itself, "REDACT" or "https", proves nothing)
    assume(value not in shape.format(name=name, value=REDACTED))
    text = before + " " + shape.format(name=name, value=value) + " " + after
    scrubbed = scrub_text(text)
    assert value not in scrubbed.replace(before, "").replace(after, "")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_scrubbing_any_text_keeps_it_text_and_never_raises(text: str) -> None:
    scrubbed = Serializer().clean(text)
    assert isinstance(scrubbed, str)
    orjson.loads(Serializer().encode({"m": scrubbed}))


README_CONFIG_WITH_A_DEAD_REDIS = """
import logging.config, sys
import wide_logging
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"wide": {
        "class": "wide_logging.WideEventHandler",
        "sink": "redis://app:hunter2secret@127.0.0.1:1/0?socket_timeout=0.2&connect_timeout=0.2",
        "fallback": "file:" + sys.argv[1],
        "max_retries": 0,
        "sampling": {"normal_rate": 1.0},
    }},
    "root": {"handlers": ["wide"], "level": "INFO"},
})
logging.getLogger("app").info("hello")
assert wide_logging.flush(10)
"""


def test_our_warnings_reach_stderr_with_the_readme_config_and_masked(tmp_path: Path) -> None:
    """root -> only the WideEventHandler: our own warnings must not vanish (they are never
    put in events), and they go to stderr as logging.lastResort would, masked."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", README_CONFIG_WITH_A_DEAD_REDIS, str(tmp_path / "spool.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "wide_logging.internal ERROR: sink redis://app:***@127.0.0.1:1/0" in result.stderr
    assert "failed after 1 attempt(s)" in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout
    assert "hunter2secret" not in (tmp_path / "spool.jsonl").read_text()


# -- what the attacker's pass found, beyond the corpus -----------------------------------


@pytest.mark.parametrize(
    "unit",
    ["://" + "a.", "eyJ-", "a:", "a=", "'a': ", "<a>", "x@y:", "Basic ", "a.a:", "'", "a:b@"],
)
def test_scrubbing_costs_what_the_text_is_long(unit: str) -> None:
    """Text crafted to make a regular expression backtrack (the first version took 0.19 s
    per 8 KiB, quadratic): 128 KiB of it must take a fraction of a second."""
    import time

    text = (unit * (131072 // len(unit)))[:131072]
    started = time.perf_counter()
    scrub_text(text)
    assert time.perf_counter() - started < 2.0


def test_basic_credentials_are_masked_but_not_the_word_basic() -> None:
    import base64

    token = base64.b64encode(b"bob:hunter2secret").decode()
    assert token not in scrub_text(f"upstream sent Basic {token} again")
    assert scrub_text("the Basic plan costs $10") == "the Basic plan costs $10"


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("redis://:ab#PW1cd@cache:6379/0", "PW1cd"),
        ("redis://:ab?PW2cd@cache:6379/0", "PW2cd"),
        ("mongodb://u:p#PW3@h/db", "PW3"),
        ("mongodb+srv://u:p#PW4@cluster0.example.net/db", "PW4"),
        ("redis:/u:PW5@h:6379/0", "PW5"),
        ("redis//u:PW6@h:6379/0", "PW6"),
        ("file:?token=PW7", "PW7"),
    ],
)
def test_odd_sink_urls_never_show_a_password(url: str, hidden: str, tmp_path: Path) -> None:
    assert hidden not in mask_url(url)
    try:
        handler = WideEventHandler(sink=url, fallback=f"file:{tmp_path}/spool/e.jsonl")
    except Exception as exc:  # refused at configuration: the message must not show it
        message = str(exc)
        assert hidden not in message
    else:
        try:
            names = [link.sink.name for link in handler.pipeline.links]
            assert all(hidden not in name for name in names)
            assert hidden not in json.dumps(metrics.snapshot())
        finally:
            handler.close()


def test_a_record_the_handler_cannot_take_never_prints_its_arguments(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    code = f"""
import logging
from wide_logging import WideEventHandler
handler = WideEventHandler(sink="file:{tmp_path}/e.jsonl", fallback="file:{tmp_path}/s/e.jsonl")
logging.getLogger().addHandler(handler)
logging.getLogger().error("token=%s", "SeCrEtArG1", exc_info=(ValueError,))  # cannot format
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "SeCrEtArG1" not in result.stderr + result.stdout


def test_our_own_error_messages_are_scrubbed(
    make_handler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("wide_logging.internal").error(
        "sink failed: %s", "redis://app:SeCrEtInT1@cache/0 token=SeCrEtInT2"
    )
    assert "SeCrEtInT" not in caplog.text
    assert "redis://app:***@cache/0" in caplog.text


def test_a_late_annotation_racing_the_encoding_is_never_stored_unscanned(
    handler: WideEventHandler, tmp_path: Path
) -> None:
    """Another thread's annotate(), past its check that the event is open, finishes while
    orjson encodes the event: what it adds must not reach the output unscanned. (Hooks make
    the interleaving certain: a value whose repr waits holds the thread inside annotate();
    a tzinfo that orjson calls mid-encode lets it go.)"""
    import contextvars
    import threading
    import time

    s = secret(950)
    inside, encoding = threading.Event(), threading.Event()

    class Gate:
        def __repr__(self) -> str:
            inside.wait(5)
            return "Gate()"

    class EncodingNow(datetime.tzinfo):
        def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
            inside.set()
            encoding.wait(5)
            return datetime.timedelta(0)

        def dst(self, dt: datetime.datetime | None) -> None:
            return None

    async def racing(request: Request) -> PlainTextResponse:
        annotate(a_when=datetime.datetime(2024, 1, 1, tzinfo=EncodingNow()))
        annotate(user={"id": 1})
        context = contextvars.copy_context()

        def late() -> None:
            context.run(annotate, user={"note": f"password={s}", "g": Gate()})
            encoding.set()

        threading.Thread(target=late, daemon=True).start()
        time.sleep(0.05)  # the late thread now waits inside annotate()
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/race", racing)])
    app.add_middleware(WideEventMiddleware)
    with TestClient(app) as client:
        client.get("/race")
    assert handler.flush(10)
    written = (tmp_path / "out" / "events.jsonl").read_text()
    assert '"user":{"id":1' in written  # the event was written
    assert s not in written


@pytest.mark.parametrize(
    "text",
    [
        "Session : ouverte pour alice depuis 10.0.0.1",  # French puts a space before ':'
        "Token : expiré depuis 3 minutes",
        '  File "/usr/lib/python3.11/secrets.py", line 123, in load',
        '  File "/venv/site-packages/google/oauth2/credentials.py", line 9, in refresh',
    ],
)
def test_prose_and_stack_frames_are_not_taken_for_secrets(text: str) -> None:
    assert scrub_text(text) == text
