from __future__ import annotations

import datetime
import decimal
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wide_logging import ConfigurationError
from wide_logging.serialize import REDACTED, Serializer


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Opaque:
    __slots__ = ()


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5),
    st.binary(max_size=50),
    st.builds(BadRepr),
    st.builds(Opaque),
    st.just(decimal.Decimal("1.10")),
    st.just(uuid.UUID(int=7)),
    st.just(datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)),
    st.sets(st.integers(), max_size=3),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.integers(), st.none(), st.tuples(st.integers())),
            children,
            max_size=5,
        ),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_encode_never_raises_and_always_gives_valid_json(value: Any) -> None:
    serializer = Serializer(max_event_bytes=4096)
    data = serializer.encode({"event_id": "e", "kind": "http.request", "payload": value})
    decoded = orjson.loads(data)
    assert decoded["event_id"] == "e"
    assert len(data) <= 4096


@settings(max_examples=200, deadline=None)
@given(values)
def test_clean_output_is_plain_json(value: Any) -> None:
    serializer = Serializer()
    cleaned = serializer.clean({"v": value}, strict=True)
    orjson.loads(orjson.dumps(cleaned))  # every key a str, every value encodable


def test_cycles_are_cut() -> None:
    loop: dict[str, Any] = {"name": "a"}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    data = orjson.loads(Serializer().encode({"loop": loop, "items": items}))
    assert data["loop"] == {"name": "a", "self": "[cycle]"}
    assert data["items"] == [1, "[cycle]"]


def test_shared_but_acyclic_values_are_not_called_cycles() -> None:
    shared = {"x": 1}
    cleaned = Serializer().clean({"a": shared, "b": shared})
    assert cleaned == {"a": {"x": 1}, "b": {"x": 1}}


def test_huge_strings_are_clipped_with_a_marker() -> None:
    serializer = Serializer(max_string=100)
    cleaned = serializer.clean({"blob": "x" * 10_000})
    assert cleaned["blob"].startswith("x" * 100)
    assert cleaned["blob"].endswith("[truncated 9900 chars]")


def test_oversized_event_shrinks_but_keeps_identity_and_error() -> None:
    serializer = Serializer(max_event_bytes=2048)
    event = {
        "event_id": "id-1",
        "kind": "http.request",
        "request_id": "r-1",
        "error": {"type": "ValueError", "message": "boom"},
        "logs": [{"message": "m" * 500} for _ in range(50)],
        "payload": ["y" * 5000 for _ in range(50)],
    }
    data = serializer.encode(event)
    assert len(data) <= 2048
    decoded = orjson.loads(data)
    assert decoded["event_id"] == "id-1"
    assert decoded["request_id"] == "r-1"
    assert decoded["error"]["type"] == "ValueError"
    assert decoded["truncated"]["limit_bytes"] == 2048
    assert decoded["truncated"]["original_bytes"] > 2048


def test_invalid_utf8_and_big_ints_fall_back_to_visible_text() -> None:
    raw = b"caf\xc3\xa9 \xff".decode("utf-8", "surrogateescape")
    data = orjson.loads(Serializer().encode({"s": raw, "big": 2**100, "b": b"\xff\xfe"}))
    assert data["s"].startswith("café ")
    assert "udcff" in data["s"]
    assert data["big"] == str(2**100)
    assert data["b"] == "\ufffd\ufffd"


def test_nan_and_infinity_become_null() -> None:
    data = orjson.loads(Serializer().encode({"a": math.nan, "b": math.inf}))
    assert data == {"a": None, "b": None}


def test_unrepresentable_objects_become_placeholders() -> None:
    data = orjson.loads(Serializer().encode({"bad": BadRepr(), "odd": Opaque()}))
    assert data["bad"] == "<unrepresentable BadRepr>"
    assert data["odd"].startswith("<test_serialize.Opaque object")


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "x_api_key",
        "password",
        "db_password",
        "PASSWD",
        "client_secret",
        "access_token",
        "refreshToken",
        "apiKey",
        "credentials",
        "private_key",
    ],
)
def test_secret_keys_are_redacted_by_default(key: str) -> None:
    cleaned = Serializer().clean({"outer": {key: "hunter2"}})
    assert cleaned == {"outer": {key: REDACTED}}


@pytest.mark.parametrize(
    "key",
    [
        "user",
        "route",
        "author",
        "keyboard",
        # counts and flags that merely contain a secret's word (LLM usage, analytics)
        "tokens_used",
        "prompt_tokens",
        "max_tokens",
        "sessions",
        "session_count",
        "auth_method",
        "authSource",
        "is_auth",
        "secretary",
        "cookie_consent",
    ],
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert Serializer().clean({key: "v"}) == {key: "v"}


@pytest.mark.parametrize(
    "key",
    [
        "HTTP_AUTHORIZATION",
        "X-Authorization",
        "authHeader",
        "basicAuth",
        "dbPwd",
        "pass",
        "PHPSESSID",
        "Api Key",
        "user%5Bpassword%5D",
        "Authorization:",
        "access_token",
        "sessionId",
    ],
)
def test_secret_names_in_other_shapes_are_redacted(key: str) -> None:
    assert Serializer().clean({key: "hunter2"}) == {key: REDACTED}


def test_configured_keys_and_pattern() -> None:
    serializer = Serializer(redact=["ssn", "X-Internal"], redact_pattern=r"^card")
    cleaned = serializer.clean({"ssn": 1, "x_internal": 2, "card_number": 3, "password": 4})
    assert cleaned == {
        "ssn": REDACTED,
        "x_internal": REDACTED,
        "card_number": REDACTED,
        "password": 4,
    }


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="list of key names"):
        Serializer(redact="password")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="regular expression"):
        Serializer(redact_pattern="(")
    with pytest.raises(ConfigurationError, match="max_string"):
        Serializer(max_string=0)
    with pytest.raises(ConfigurationError, match="non-empty strings"):
        Serializer(redact=[""])


def test_long_lists_and_wide_dicts_are_capped() -> None:
    serializer = Serializer(max_items=3)
    cleaned = serializer.clean({"l": list(range(10)), "d": {str(i): i for i in range(10)}})
    assert cleaned["l"] == [0, 1, 2, "[7 more items]"]
    assert list(cleaned["d"]) == ["0", "1", "2", "..."]


def test_deep_nesting_is_capped() -> None:
    deep: Any = "leaf"
    for _ in range(50):
        deep = {"d": deep}
    node = Serializer(max_depth=5).clean({"deep": deep})
    levels = 0
    while isinstance(node, dict):
        node = next(iter(node.values()))
        levels += 1
    assert (levels, node) == (5, "[max depth]")


def test_broken_mapping_does_not_break_cleaning() -> None:
    class Broken(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("nope")

    assert Serializer().clean({"b": Broken(a=1)}) == {"b": "[unreadable mapping: RuntimeError]"}


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_flat_dict_shortcut_gives_what_the_full_walk_gives(value: Any) -> None:
    # clean() copies flat dicts of scalars without the recursive walk; anything it cannot
    # vouch for (odd keys, nested or long values) must go the full way with the same result
    # (Each twice: a key's first sight takes the full way and remembers whether it names a
    # secret; the shortcut is for keys seen before.)
    serializer = Serializer(max_string=32)
    for candidate in (
        value,
        {"k": value},
        {"password": value, "id": 7},
        {"name": "Authorization", "value": value},
        {"key": "X-Api-Key", "value": value, "id": 7},
    ):
        if isinstance(candidate, dict):
            full = serializer._clean(candidate, 0, set(), False, serializer.max_string)
            assert serializer.clean(candidate) == full
            assert serializer.clean(candidate) == full


def test_a_header_pair_is_redacted_even_when_its_name_is_clipped() -> None:
    serializer = Serializer(max_string=16)
    for _ in range(2):  # (the second time with every key's secrecy known)
        cleaned = serializer.clean({"name": "Proxy-Authorization", "value": "hunter2secret"})
        assert cleaned["value"] == REDACTED


def test_a_long_key_is_clipped_however_often_it_was_seen() -> None:
    """The flat-dict shortcut trusts keys whose secrecy is known: a key too long to be
    stored as it is must take the full walk (which clips it) every time, even after it
    was asked about as it is (a top-level annotate() key is)."""
    serializer = Serializer()
    long_key = "k" * 300
    clipped = [serializer.clean({long_key: 1})]
    serializer.is_secret(long_key)
    clipped += [serializer.clean({long_key: 1}) for _ in range(2)]
    assert all(len(next(iter(copy))) < 300 for copy in clipped)
    assert clipped[0] == clipped[1] == clipped[2]


def test_a_key_that_claims_to_equal_any_name_never_answers_for_a_secret() -> None:
    class Liar(str):
        __slots__ = ()

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("password")

    serializer = Serializer()
    serializer.is_secret(Liar("harmless"))  # must not be remembered for "password"
    assert serializer.clean({"password": "hunter2", "id": 1})["password"] == REDACTED
    assert serializer.clean({"password": "hunter2", "id": 1})["password"] == REDACTED


def test_a_flat_dict_changed_by_another_thread_is_copied_as_it_was_checked() -> None:
    """Between checking a flat dict and copying it, another thread of the app may put a
    nested dict with a secret in it: what is returned must be what was checked (here:
    never the app's own nested dict, unredacted)."""
    serializer = Serializer()
    shared: dict[str, Any] = {"note": "ok", **{f"k{i}": i for i in range(150)}}
    secret = {"password": "hunter2"}
    serializer.clean(dict(shared))  # every key's secrecy known: the shortcut applies
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():  # (each state held until the other thread has run)
            shared["note"] = secret
            time.sleep(0)
            shared["note"] = "ok"
            time.sleep(0)

    flipper = threading.Thread(target=flip)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    flipper.start()
    try:
        copies = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            note = serializer.copy(shared)["note"]
            assert note is not secret
            assert note in ("ok", {"password": REDACTED})
            copies += 1
    finally:
        stop.set()
        flipper.join()
        sys.setswitchinterval(interval)
    assert copies > 1000


def test_flat_dicts_are_copied_redacted_and_capped() -> None:
    serializer = Serializer(max_string=16)
    original = {"id": 7, "token": "hunter2", "name": "x" * 40, 3: "odd key"}
    cleaned = serializer.clean(original)
    assert cleaned == {
        "id": 7,
        "token": REDACTED,
        "name": "x" * 16 + "...[truncated 24 chars]",
        "3": "odd key",
    }
    flat = {"id": 7, "plan": "pro"}
    copied = serializer.clean(flat)
    assert copied == flat
    assert copied is not flat


# -- big values are capped before they are converted ------------------------------------


def _peak_bytes_of(call: Any) -> tuple[Any, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"\xff" * 10**8,
        lambda: bytearray(b"a" * 10**8),
        lambda: memoryview(b"z" * 10**8),
        lambda: list(range(10**7)),
        lambda: tuple(range(10**7)),
        lambda: set(range(10**6)),
        lambda: range(10**12),
    ],
    ids=["bytes", "bytearray", "memoryview", "list", "tuple", "set", "range"],
)
def test_a_huge_value_costs_what_the_cap_shows(make: Callable[[], Any]) -> None:
    value = make()  # the app's own object: not ours to count
    cleaned, peak = _peak_bytes_of(lambda: Serializer().clean({"v": value})["v"])
    assert peak < 2 * 1024 * 1024, f"cleaning allocated {peak} bytes"
    assert len(orjson.dumps(cleaned)) < 200_000


class LyingStr(str):
    def __str__(self) -> str:
        raise RuntimeError("no")

    def __getitem__(self, item: Any) -> str:
        raise RuntimeError("no")


def test_odd_strings_and_ints_are_read_safely() -> None:
    serializer = Serializer(max_string=100)
    assert serializer.clean({"s": LyingStr("a" * 1000)})["s"].startswith(
        "a" * 100 + "...[truncated"
    )
    huge = 10**5000  # beyond Python's int-to-str limit
    data = orjson.loads(serializer.encode({"n": huge}))
    assert data["n"] == f"<int of {huge.bit_length()} bits>"
    assert orjson.loads(serializer.encode({"k": {huge: 1}}))["k"]


def test_the_truncated_marker_survives_the_key_cap() -> None:
    serializer = Serializer(max_event_bytes=4096)
    event = {"event_id": "e", "kind": "http.request"} | {f"k{i:03d}": "v" * 50 for i in range(300)}
    data = orjson.loads(serializer.encode(event))
    assert data["truncated"]["limit_bytes"] == 4096
    assert data["event_id"] == "e"


def test_the_strict_path_keeps_the_librarys_fields_and_the_events_identity() -> None:
    """An int beyond 64 bits or an aware time sends an event down the strict path: span
    names that look like secrets (timings.auth_ms) stay, and nothing loses the event_id."""
    import datetime

    serializer = Serializer()
    event = {
        "event_id": "e1",
        "kind": "http.request",
        "timings": {"auth_ms": 1.5, "token_refresh_ms": 2.0},
        "n": 2**70,
        "t": datetime.time(1, 2, tzinfo=datetime.timezone.utc),
    }
    data = orjson.loads(serializer.encode(event))
    assert data["event_id"] == "e1"
    assert data["timings"] == {"auth_ms": 1.5, "token_refresh_ms": 2.0}
    assert data["n"] == str(2**70)
    assert data["t"] == "01:02:00+00:00"
