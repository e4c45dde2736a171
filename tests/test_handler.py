from __future__ import annotations

import dataclasses
import logging
import logging.config
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import read_jsonl, wait_for
from wide_logging import ConfigurationError, TailSampler, WideEventHandler, flush
from wide_logging._handler_options import HandlerOptions
from wide_logging.context import activate, deactivate
from wide_logging.handler import active_handler
from wide_logging.pipeline import in_writer_thread
from wide_logging.serialize import REDACTED
from wide_logging.testing import MemorySink, capture_events


def dict_config(tmp_path: Path, **options: Any) -> dict[str, Any]:
    handler = {
        "class": "wide_logging.WideEventHandler",
        "level": "INFO",
        "sink": f"file:{tmp_path}/out/events.jsonl",
        "service": {"name": "checkout", "version": "1.2.3", "environment": "test"},
        "sampling": {"normal_rate": 0.5, "slow_ms": 250, "critical_routes": ["/pay*"]},
        "batch_size": 7,
        "flush_interval": 0.05,
        "queue_size": 123,
        "max_retries": 1,
        "fallback": f"file:{tmp_path}/spool/events.jsonl",
        "redact": ["ssn"],
    }
    handler.update(options)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"wide": handler},
        "root": {"handlers": ["wide"], "level": "INFO"},
    }


def test_dict_config_round_trip(tmp_path: Path) -> None:
    logging.config.dictConfig(dict_config(tmp_path))
    handler = active_handler()
    assert isinstance(handler, WideEventHandler)
    assert handler in logging.getLogger().handlers
    assert handler.level == logging.INFO
    assert handler.service == {"name": "checkout", "version": "1.2.3", "environment": "test"}
    assert (handler.sampler.normal_rate, handler.sampler.slow_ms) == (0.5, 250.0)
    assert handler.sampler.critical_routes == ("/pay*",)
    pipeline = handler.pipeline
    assert (
        pipeline.options.batch_size,
        pipeline.options.queue_size,
        pipeline.options.max_retries,
    ) == (
        7,
        123,
        1,
    )
    assert pipeline.links[0].sink.name == f"file:{tmp_path}/out/events.jsonl"
    assert pipeline.spool.name == f"file:{tmp_path}/spool/events.jsonl"
    assert handler.serializer.is_secret("ssn")
    logging.getLogger("jobs").info("nightly run done")
    assert flush(5)
    [event] = read_jsonl(tmp_path / "out" / "events.jsonl")
    assert event["kind"] == "log"
    assert event["message"] == "nightly run done"
    assert event["log"] == {"level": "INFO", "logger": "jobs"}
    assert "request_id" not in event  # not a request
    assert event["sampling"] == {"rule": "log", "rate": 1.0}
    assert event["service"]["name"] == "checkout"
    # a second dictConfig closes the first handler and a new one takes over
    logging.config.dictConfig(dict_config(tmp_path, sink=f"file:{tmp_path}/out2/events.jsonl"))
    assert handler.closed
    assert active_handler() is not handler
    active = active_handler()
    assert active is not None
    active.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sink": "kafka://broker"}, "unsupported sink"),
        ({"sampling": {"normal_rate": 7}}, "normal_rate"),
        ({"sampling": "fast"}, "sampling must be a dict"),
        ({"batch_size": 0}, "batch_size"),
        ({"service": 42}, "service"),
        ({"service": {"team": "x"}}, "unknown service field"),
        ({"redact": "password"}, "redact"),
        ({"max_logs": -1}, "max_logs"),
        ({"batchsize": 10}, r"unknown option\(s\) \['batchsize'\]"),
        ({"max_string": 10, "redcat": ["x"]}, r"unknown option\(s\) \['redcat'\]"),
        ({"max_items": 0}, "max_items"),
        ({"max_depth": 1000}, "max_depth"),
        ({"metrics_interval": 0.5}, "metrics_interval"),
        # accepted once, failing later (the writer thread died or spun, or silently wrong)
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"flush_interval": float("inf")}, "flush_interval"),
        ({"flush_interval": 1e10}, "flush_interval"),
        ({"breaker_cooldown": float("nan")}, "breaker_cooldown"),
        ({"sink_timeout": 0}, "sink_timeout"),
        ({"sampling": {"slow_ms": float("nan")}}, "slow_ms"),
        ({"sampling": {"critical_routes": {"/pay": True}}}, "critical_routes"),
        ({"sampling": {"key": "short"}}, "key"),
        ({"log_events": "false"}, "log_events must be true or false"),
        ({"metrics_events": "yes"}, "metrics_events must be true or false"),
        ({"redact_pattern": 123}, "redact_pattern"),
        ({"sink": ""}, "sink must be a sink URL"),
        (
            {"sink": "redis://127.0.0.1:1/0?streamm=x"},
            r"unknown redis sink URL option\(s\) \['streamm'\]",
        ),
        ({"sink": "mongodb://"}, "invalid mongodb URL"),
        ({"sink": "mongodb://h/db?colection=x"}, "invalid mongodb URL"),
        ({"sink": "file:/proc/wide-logging/events.jsonl"}, "cannot be created"),
        # an attacker's pass found these accepted, and failing at the first write
        ({"sink": "redis://127.0.0.1:1/0", "sink_options": {"maxlen": -1}}, "maxlen"),
        ({"sink": "redis://127.0.0.1:1/0", "sink_options": {"maxlen": "many"}}, "maxlen"),
        ({"sink": "redis://127.0.0.1:1/0", "sink_options": {"stream": ""}}, "stream"),
        (
            {"sink": "redis://127.0.0.1:1/0", "sink_options": {"socket_timeout": -1}},
            "socket_timeout",
        ),
        ({"sink": "redis://127.0.0.1:1/0?connect_timeout=inf"}, "connect_timeout"),
        ({"sink": "mongodb://h/db", "sink_options": {"collection": ""}}, "collection"),
        ({"sink": "mongodb://h/db", "sink_options": {"retention_days": -3}}, "retention_days"),
        ({"sink": "redis://[::1/0"}, "invalid sink URL"),
        ({"redact_pattern": ""}, "null to turn it off"),
        ({"service": {"name": 0}}, "service name"),
        ({"level": True}, "level must be a logging level"),
        ({"max_string": 10**12}, "max_string"),
    ],
)
def test_malformed_config_fails_at_configuration_time(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="Unable to configure handler 'wide'") as info:
        logging.config.dictConfig(dict_config(tmp_path, **options))
    cause = info.value.__cause__
    assert isinstance(cause, ConfigurationError)
    assert re.search(message, str(cause))


def test_an_unknown_level_is_refused_directly_and_through_dict_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="level must be a logging level"):
        WideEventHandler(level="loud", sink=f"file:{tmp_path}/e.jsonl")
    with pytest.raises(ValueError, match="Unable to configure handler") as info:
        logging.config.dictConfig(dict_config(tmp_path, level="loud"))
    assert "loud" in str(info.value.__cause__)  # dictConfig checks it before we see it


def test_a_dotted_redact_name_redacts_its_last_part(tmp_path: Path) -> None:
    handler = WideEventHandler(
        sink=f"file:{tmp_path}/e.jsonl", fallback=f"file:{tmp_path}/s/e.jsonl", redact=["user.ssn "]
    )
    try:
        assert handler.serializer.clean({"user": {"ssn": "123-45-6789"}}) == {
            "user": {"ssn": REDACTED}
        }
    finally:
        handler.close()


def test_spool_must_differ_from_the_sink(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="spool file must differ"):
        WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", fallback=f"file:{tmp_path}/e.jsonl")


def test_environment_variables_override_defaults_not_explicit_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_handler: Callable[..., WideEventHandler]
) -> None:
    monkeypatch.setenv("WIDE_LOGGING_SINK", f"file:{tmp_path}/env/events.jsonl")
    monkeypatch.setenv("WIDE_LOGGING_SERVICE", "from-env")
    monkeypatch.setenv("WIDE_LOGGING_NORMAL_RATE", "0.25")
    monkeypatch.setenv("WIDE_LOGGING_SLOW_MS", "50")
    monkeypatch.setenv("WIDE_LOGGING_ENVIRONMENT", "staging")
    from_env = WideEventHandler(flush_interval=0.05)
    try:
        assert from_env.pipeline.links[0].sink.name == f"file:{tmp_path}/env/events.jsonl"
        assert from_env.pipeline.spool.name == f"file:{tmp_path}/env/spool/events.jsonl"
        assert from_env.service == {"name": "from-env", "environment": "staging"}
        assert (from_env.sampler.normal_rate, from_env.sampler.slow_ms) == (0.25, 50.0)
    finally:
        from_env.close()
    explicit = make_handler(service="explicit", sampling={"normal_rate": 0.5})
    assert explicit.service["name"] == "explicit"
    assert explicit.sampler.normal_rate == 0.5
    assert explicit.sampler.slow_ms == 50.0  # not given explicitly: the env still applies


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WIDE_LOGGING_NORMAL_RATE", "two percent"), ("WIDE_LOGGING_SLOW_MS", "nan")],
)
def test_bad_environment_value_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        WideEventHandler()


def test_a_sink_directory_this_process_cannot_write_is_refused_at_configuration(
    tmp_path: Path,
) -> None:
    """An immutable directory: not writable even by root (the tests run as root)."""
    import shutil
    import subprocess

    locked = tmp_path / "locked"
    locked.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(locked)], check=False).returncode:
        pytest.skip("this filesystem has no immutable flag (chattr +i)")
    try:
        with pytest.raises(ConfigurationError, match="is not writable by this process"):
            WideEventHandler(
                sink=f"file:{locked}/events.jsonl", fallback=f"file:{tmp_path}/s/e.jsonl"
            )
    finally:
        subprocess.run([chattr, "-i", str(locked)], check=True)


def test_default_sink_is_the_local_file(tmp_path: Path) -> None:
    handler = WideEventHandler()
    try:
        assert handler.pipeline.links[0].sink.name == "file:wide-logs/events.jsonl"
        assert handler.pipeline.spool.name == "file:wide-logs/spool/events.jsonl"
    finally:
        handler.close()


def test_filters_decide_which_records_attach_added_or_overridden(tmp_path: Path) -> None:
    """A handler without filters skips ``filter()``; one with a filter added, or a subclass
    that overrides ``filter()``, still has each record asked."""

    class Quiet(WideEventHandler):
        def filter(self, record: logging.LogRecord) -> bool:
            return "healthz" not in record.getMessage()

    added = WideEventHandler(sink=f"file:{tmp_path}/a/events.jsonl")
    added.addFilter(lambda record: "healthz" not in record.getMessage())
    handlers = [
        WideEventHandler(sink=f"file:{tmp_path}/p/events.jsonl"),
        added,
        Quiet(sink=f"file:{tmp_path}/q/events.jsonl"),
    ]
    logger = logging.getLogger("app.filtered")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    attached = []
    try:
        for handler in handlers:
            logger.handlers = [handler]
            event = handler.new_event()
            token = activate(event)
            logger.info("GET /healthz")
            logger.info("real work")
            deactivate(token)
            attached.append([entry["message"] for entry in event.finalize({}, {})["logs"]])
    finally:
        logger.handlers = []
        for handler in handlers:
            handler.close()
    assert attached == [["GET /healthz", "real work"], ["real work"], ["real work"]]


def test_a_record_made_by_hand_with_an_odd_name_never_raises(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler()
    event = handler.new_event()
    token = activate(event)
    try:
        for name in (None, 123):
            handler.handle(logging.makeLogRecord({"name": name, "msg": "by hand"}))
    finally:
        deactivate(token)
    logs = event.finalize({}, {})["logs"]
    assert [(entry["logger"], entry["message"]) for entry in logs] == [
        ("None", "by hand"),
        ("123", "by hand"),
    ]


def test_records_inside_an_event_attach_once_even_with_two_handlers(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    first, second = make_handler(), make_handler()
    logger = logging.getLogger("app.two")
    logger.addHandler(first)
    logger.addHandler(second)
    logger.setLevel(logging.INFO)
    try:
        event = first.new_event()
        token = activate(event)
        logger.info("once")
        deactivate(token)
        fields = event.finalize({}, {})
        assert [entry["message"] for entry in fields["logs"]] == ["once"]
    finally:
        logger.removeHandler(first)
        logger.removeHandler(second)


def test_own_loggers_and_writer_thread_records_are_never_captured(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(sink=sink)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    seen_in_writer: list[bool] = []

    class LoggingSink(MemorySink):
        def write(self, batch: Any) -> None:
            seen_in_writer.append(in_writer_thread())
            logging.getLogger("redis.connection").warning("sink library chatter")
            super().write(batch)

    logging.getLogger("wide_logging.internal").warning("internal diagnostics")
    chatty = make_handler(sink=LoggingSink())
    root.addHandler(chatty)
    logging.getLogger("app").warning("real record")
    assert flush(5)
    root.removeHandler(handler)
    root.removeHandler(chatty)
    messages = [e.get("message") for e in sink.events]
    assert messages.count("real record") == 1
    assert "internal diagnostics" not in messages
    assert "sink library chatter" not in messages
    assert seen_in_writer
    assert all(seen_in_writer)


def test_error_record_outside_a_request_is_kept_even_at_rate_zero(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(sink=sink, sampling={"normal_rate": 0.0, "log_rate": 0.0})
    logger = logging.getLogger("jobs.err")
    logger.addHandler(handler)
    try:
        logger.info("dropped by log_rate")
        try:
            {}["missing"]
        except KeyError:
            logger.exception("job failed")
        handler.flush(5)
    finally:
        logger.removeHandler(handler)
    [event] = sink.events
    assert event["sampling"] == {"rule": "error", "rate": 1.0}
    assert event["error"]["type"] == "KeyError"
    assert (
        event["code"]["function"] == "test_error_record_outside_a_request_is_kept_even_at_rate_zero"
    )
    assert handler.metrics.get("events.sampled_out.log") == 1


def test_emit_never_raises_on_a_broken_record(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(sink=sink)
    logger = logging.getLogger("app.broken")
    # handed to our handler directly: pytest's own log capture raises on these
    for msg, args in (("%s and %s", ("only one arg",)), ({"password": "x", "o": object()}, ())):
        handler.handle(logger.makeRecord(logger.name, logging.WARNING, "f", 1, msg, args, None))
    handler.flush(5)
    messages = [e["message"] for e in sink.events]
    assert messages[0].startswith("%s and %s")
    assert len(messages) == 2


def test_annotated_secrets_never_reach_the_sink(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(sink=sink, sampling={"normal_rate": 1.0}, redact=["ssn"])
    event = handler.new_event()
    event.annotate(
        user={"ssn": "123-45-6789", "api_key": "k"}, headers={"Authorization": "Bearer x"}
    )
    handler.submit(event)
    handler.flush(5)
    [stored] = sink.events
    assert stored["user"] == {"ssn": REDACTED, "api_key": REDACTED}
    assert stored["headers"] == {"Authorization": REDACTED}
    raw = b"".join(line for batch in sink.batches for line in batch)
    assert b"123-45-6789" not in raw
    assert b"Bearer x" not in raw


def test_capture_events_sees_dropped_events_marked(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler(sampling={"normal_rate": 0.0})
    with capture_events() as events:
        handler.submit(handler.new_event())
    with capture_events(keep_all=False) as kept_only:
        handler.submit(handler.new_event())
    assert events[0]["sampling"] == {"rule": "normal", "rate": 0.0, "sampled_out": True}
    assert kept_only == []


def test_concurrent_submits_are_all_counted(make_handler: Callable[..., WideEventHandler]) -> None:
    sink = MemorySink()
    handler = make_handler(sink=sink, sampling={"normal_rate": 1.0}, queue_size=100_000)

    def work(n: int) -> None:
        for i in range(500):
            event = handler.new_event(request_id=f"t{n}-{i}")
            handler.submit(event)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush(10)
    wait_for(lambda: len(sink.events) == 4000, what="all events")
    assert len({e["request_id"] for e in sink.events}) == 4000
    assert handler.metrics.get("events.seen") == 4000


def test_sink_options_from_dict_config_reach_the_sink(tmp_path: Path) -> None:
    logging.config.dictConfig(
        dict_config(
            tmp_path,
            sink=f"file:{tmp_path}/out/events.jsonl?backups=2",
            sink_options={"max_bytes": 4096},
        )
    )
    handler = active_handler()
    assert handler is not None
    sink = handler.pipeline.links[0].sink
    assert (sink.max_bytes, sink.backups) == (4096, 2)  # type: ignore[attr-defined]
    handler.close()
    with pytest.raises(ConfigurationError, match="takes no options"):
        WideEventHandler(sink="stdout", sink_options={"stream": "x"})
    with pytest.raises(ConfigurationError, match="unknown file sink option"):
        WideEventHandler(sink=f"file:{tmp_path}/x.jsonl", sink_options={"colour": 1})


def test_a_records_extra_fields_sit_beside_its_message(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    log = logging.getLogger("test.extra")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with capture_events() as events:
            event = handler.new_event(request_id="req-extra")
            token = activate(event)
            log.info(
                "charged",
                extra={
                    "order_id": 42,
                    "card_token": "tok_123",
                    "callback": "https://shop:hunter2@pay.example.com/cb",
                    "level": "forged",  # the entry's own fields are never replaced
                    "_private": "left out",
                },
            )
            deactivate(token)
            handler.submit(event)
            log.warning("outside a request", extra={"batch": 7, "request_id": "forged"})
    finally:
        log.removeHandler(handler)
    [entry] = events.requests()[0]["logs"]
    assert entry["message"] == "charged"
    assert entry["level"] == "INFO"
    assert entry["order_id"] == 42
    assert entry["card_token"] == REDACTED
    assert entry["callback"] == f"https://shop:{REDACTED}@pay.example.com/cb"
    assert "_private" not in entry
    assert not {"msg", "args", "levelno", "pathname", "lineno"} & set(entry)
    [log_event] = events.by_kind("log")
    assert log_event["batch"] == 7
    assert "request_id" not in log_event  # a log event has none; the forged one is refused
    assert log_event["refused_annotations"] == {"request_id": "forged"}


def test_extra_fields_named_like_parameters_are_kept(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    """extra={"self": ...} outside a request used to cost the record (a TypeError)."""
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    log = logging.getLogger("test.extra.self")
    log.addHandler(handler)
    try:
        with capture_events() as events:
            log.warning("odd names", extra={"self": "me", "fields": 2})
    finally:
        log.removeHandler(handler)
    [event] = events.by_kind("log")
    assert (event["self"], event["fields"]) == ("me", 2)


def test_the_events_options_reach_the_serializer_through_dict_config(tmp_path: Path) -> None:
    """Each option is declared once where it is used (the serializer's in _clean.Cleaner):
    the handler passes them on by name."""
    logging.config.dictConfig(
        dict_config(tmp_path, max_items=5, max_depth=3, max_logs=7, redact=["ssn"])
    )
    handler = active_handler()
    assert handler is not None
    try:
        serializer = handler.serializer
        assert (serializer.max_items, serializer.max_depth, serializer.max_logs) == (5, 3, 7)
        assert serializer.copy({"ssn": "123-45-6789"}) == {"ssn": REDACTED}
    finally:
        handler.close()


def test_all_of_a_handlers_options_resolve_once_into_one_frozen_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WIDE_LOGGING_SINK", f"file:{tmp_path}/env/events.jsonl")
    monkeypatch.setenv("WIDE_LOGGING_FALLBACK", "stderr: file:/nowhere/spool.jsonl")
    monkeypatch.setenv("WIDE_LOGGING_SLOW_MS", "75")
    options = HandlerOptions.resolve(
        "info",
        {"service": "shop", "sampling": {"normal_rate": 0.1}, "batch_size": 7, "max_string": 99},
    )
    assert options.level == "INFO"
    assert options.sink == f"file:{tmp_path}/env/events.jsonl"
    assert options.fallback == ("stderr:", "file:/nowhere/spool.jsonl")
    assert options.service == {"name": "shop"}
    assert isinstance(options.sampler, TailSampler)
    assert (options.sampler.normal_rate, options.sampler.slow_ms) == (0.1, 75.0)
    assert options.pipeline.batch_size == 7
    assert options.event == {"max_string": 99}
    assert not (tmp_path / "env").exists()  # resolving opens nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sink = "stdout:"  # type: ignore[misc]
    with pytest.raises(TypeError):  # frozen all the way down: a copy, read-only
        options.service["name"] = "other"  # type: ignore[index]
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", batch_size=7, fallback=[])
    try:
        assert handler.options.pipeline == handler.pipeline.options
        assert handler.options.sink == f"file:{tmp_path}/e.jsonl"
        # fallback=[] given in code wins over WIDE_LOGGING_FALLBACK: no fallback sinks
        assert [link.sink.name for link in handler.pipeline.links] == [f"file:{tmp_path}/e.jsonl"]
    finally:
        handler.close()
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) \['cls'\]"):
        WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", cls=1)


def test_a_capture_ending_while_the_route_is_read_stores_no_sampled_out_event(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    """With a capture active the route of every event is read (captures see them all);
    the capture may end on another thread meanwhile: the event stays sampled out."""
    sink = MemorySink()
    handler = make_handler(sink=sink, sampling={"normal_rate": 0.0})
    reading, release = threading.Event(), threading.Event()

    def route() -> str:
        reading.set()
        release.wait(10)
        return "/orders/{id}"

    event = handler.new_event("http.request", "req-race-1")
    event.method, event.path, event.status = "GET", "/orders/1", 200
    with capture_events() as captured:
        submitting = threading.Thread(target=handler.submit, args=(event, route))
        submitting.start()
        assert reading.wait(10)
    release.set()
    submitting.join(10)
    assert handler.flush(10)
    assert sink.events == []
    assert handler.metrics.get("events.sampled_out.normal") == 1
    assert captured.requests() == []  # (it had ended before the event was finished)
