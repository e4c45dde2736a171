"""Recognising secrets: by the name they are stored under, and inside free text and URLs.

Theory of operation
-------------------
A value is a secret when its *key* says so (``authorization``, ``api_key``,
``user.session`` with ``redact=["session"]``): :class:`SecretNames` decides, per dotted
part of the key, from a set of exact names and a pattern. That covers dicts, dotted
annotation keys and header lists, and it is cheap (cached per key).

Free text is the other way in: a log message that prints a URL with ``?token=``, an
exception whose message holds ``user:pass@host``, a logged ``dict(request.headers)``.
:func:`scrub_text` finds the places where text *names* a value — ``key=value``,
``Key: value``, ``'key': 'value'``, ``('key', 'value')``, URL userinfo, ``Bearer <token>``,
a JWT — and masks the value when the name is a secret's. A cheap gate
(:func:`needs_scrub`) lets ordinary strings through without running the patterns.

:func:`mask_url` is the one masker for URLs in our own messages, metric labels and CLI
output. It reads userinfo the way the clients do (everything up to the last ``@`` of the
authority), and also masks what only looks like a password because the user wrote an
unencoded ``/`` or ``@`` into it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

REDACTED = "[REDACTED]"
URL_MASK = "***"

#: Header and field names that are always secrets, compared case-insensitively with
#: ``_`` and ``-`` treated alike, against each dotted part of a key.
DEFAULT_REDACT_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "cookies",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
        "auth",
        "pwd",
        "passphrase",
        "jwt",
        "bearer",
        "dsn",
        "sig",
        "signature",
        "sid",
        "session-id",
        "sessionid",
        "private-key",
        "client-secret",
    }
)
#: Any key part containing one of these is a secret too. The short words only count as a
#: whole word (``x-auth``, ``auth-header``, never ``author``).
DEFAULT_REDACT_PATTERN = (
    r"passw(?:or)?d|passphrase|secret|token|api-?key|credential|private-?key|cookie|"
    r"session|jwt|bearer|signature|(?:^|-)(?:auth|pwd|dsn|sig|sid)(?:-|$)"
)
#: Query parameters that carry keys or signatures although their names are generic.
_SECRET_QUERY_NAMES = frozenset({"key", "sig", "code", "access-key-id"})


def normalize_key(key: str) -> str:
    return key.lower().replace("_", "-")


class SecretNames:
    """Decides whether a key names a secret. Configured once; safe to share."""

    __slots__ = ("_cache", "_keys", "_pattern")

    _CACHE_LIMIT = 4096

    def __init__(self, extra: Iterable[str] = (), pattern: re.Pattern[str] | None = None) -> None:
        self._keys = DEFAULT_REDACT_KEYS | {normalize_key(key) for key in extra}
        self._pattern = pattern
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        """True when values under ``key`` must never leave the process."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        secret = any(self._part_is_secret(part) for part in normalize_key(key).split("."))
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[key] = secret
        return secret

    @property
    def known(self) -> dict[str, bool]:
        """The decisions made so far, by key: a lookup here skips the call on a hot path."""
        return self._cache

    def _part_is_secret(self, part: str) -> bool:
        # Form fields and query arrays: user[password], credentials[0]
        part = part.strip("[]'\" ")
        if part in self._keys:
            return True
        pattern = self._pattern
        return pattern is not None and pattern.search(part) is not None

    def in_query(self, key: str) -> bool:
        """Like calling it, plus names that are secrets in a URL query (``key``, ``sig``)."""
        return self(key) or normalize_key(key) in _SECRET_QUERY_NAMES


DEFAULT_SECRET_NAMES = SecretNames(pattern=re.compile(DEFAULT_REDACT_PATTERN, re.IGNORECASE))

# -- free text ------------------------------------------------------------------------

#: Text without any of these cannot hold a secret in a form we recognise.
_GATE = re.compile(r"://|=|:\s|[\"'][\s:,]|[Bb]earer|BEARER|eyJ")
#: ``scheme://userinfo@host``: userinfo runs to the last ``@`` before the path, as
#: urllib and redis-py read it.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#\"'<>\\]*)@")
#: ``name=`` of ``name=value`` in query strings, form bodies, ``key=value`` log lines (only
#: the name is matched: ``url=http://h/?token=x`` must find ``token=`` as well).
_ASSIGNMENT_NAME = re.compile(r"(?<![\w.\-\[\]])([A-Za-z_][\w.\-\[\]]*)\s*=\s*")
_ASSIGNMENT_VALUE_END = re.compile(r"[\s&#\"'<>\\]")
#: ``'name': 'value'``, ``"name": "value"``, ``('name', 'value')``, ``(b'name', b'value')``.
_QUOTED = re.compile(r"([\"'])([^\"'\\\s]{1,128})\1(\s*[:,]\s*b?)([\"'])((?:\\.|[^\\\n])*?)\4")
#: ``Name: `` of ``Name: value`` (an HTTP header line, YAML); the value runs to the end of
#: the line (or a quote). Only the name is matched, so ``raw: Authorization: x`` finds both.
_HEADER_NAME = re.compile(r"(?<![\w\-])([A-Za-z_][\w.\-]*):[ \t]+")
_HEADER_VALUE_END = re.compile(r"[\r\n\"'\\]")
_BEARER = re.compile(r"\b([Bb]earer|BEARER)(\s+)[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")


def needs_scrub(text: str) -> bool:
    """False for text that cannot hold a recognisable secret (most text): the fast exit."""
    return not text.isalnum() and _GATE.search(text) is not None


def scrub_text(
    text: str, is_secret: Callable[[str], bool] | None = None, mask: str = REDACTED
) -> str:
    """``text`` with the values of secret-named keys, URL passwords, bearer tokens and
    JWTs replaced by ``mask``. ``is_secret`` decides names (default: the default names)."""
    if not needs_scrub(text):
        return text
    names = is_secret if is_secret is not None else DEFAULT_SECRET_NAMES
    in_query = names.in_query if isinstance(names, SecretNames) else names

    if "://" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + _masked_userinfo(m.group(2), mask), text)
    if "'" in text or '"' in text:

        def quoted(m: re.Match[str]) -> str:
            if not names(m.group(2)):
                return m.group(0)
            return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{mask}{m.group(4)}"

        text = _QUOTED.sub(quoted, text)
    if ":" in text:
        text = _mask_values(text, _HEADER_NAME, _HEADER_VALUE_END, names, mask)
    if "=" in text:
        text = _mask_values(text, _ASSIGNMENT_NAME, _ASSIGNMENT_VALUE_END, in_query, mask)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + mask, text)
    if "eyJ" in text:
        text = _JWT.sub(mask, text)
    return text


def _mask_values(
    text: str,
    name_pattern: re.Pattern[str],
    value_end: re.Pattern[str],
    names: Callable[[str], bool],
    mask: str,
) -> str:
    """Mask the value after each ``name`` + separator found by ``name_pattern`` whose name
    is a secret's, up to ``value_end``."""
    parts: list[str] = []
    done = 0
    for match in name_pattern.finditer(text):
        if match.start() < done or not names(match.group(1)):
            continue
        end = value_end.search(text, match.end())
        stop = len(text) if end is None else end.start()
        if stop == match.end():
            continue  # an empty value: nothing to hide
        parts += [text[done : match.end()], mask]
        done = stop
    return "".join([*parts, text[done:]]) if parts else text


def _masked_userinfo(userinfo: str, mask: str) -> str:
    if not userinfo:
        return "@"
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{mask}@" if colon else f"{mask}@"


# -- URLs in our own messages -----------------------------------------------------------

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_PORT_ONLY = re.compile(r"^[^:@/]*:\d*$")


def mask_url(url: str) -> str:
    """``url`` with any password, token or key replaced by ``***``; safe to print.

    Userinfo is what a client reads (up to the last ``@`` of the authority), or, when the
    password itself holds an unencoded ``/`` (``redis://:pa/ss@host``), everything up to
    the last ``@`` before the query. Secret-named query values are masked, and so are
    secret-named entries of list-valued options (``authMechanismProperties=
    AWS_SESSION_TOKEN:...``).
    """
    if not isinstance(url, str):
        return mask_url(str(url))
    scheme = _SCHEME.match(url)
    if scheme is not None:
        start = scheme.end()
        rest = url[start:]
        end_of_netloc = len(rest)
        for stop in "/?#":
            found = rest.find(stop)
            if found != -1:
                end_of_netloc = min(end_of_netloc, found)
        at = rest.rfind("@", 0, end_of_netloc)
        if at == -1:
            # Not userinfo to a client; but ``:pa/ss@host`` is a password with a slash in it.
            end_of_query = min(i for i in (rest.find("?"), rest.find("#"), len(rest)) if i != -1)
            late_at = rest.rfind("@", 0, end_of_query)
            authority = rest[:end_of_netloc]
            if late_at != -1 and ":" in authority and not _PORT_ONLY.match(authority):
                at = late_at
        if at != -1:
            url = url[:start] + _masked_userinfo(rest[:at], URL_MASK) + rest[at + 1 :]
    return _mask_query(url)


_QUERY_PAIR = re.compile(r"([?&;])([^=&#;]+)=([^&#;]*)")
_LIST_ENTRY = re.compile(r"([^,:]+):([^,]*)")


def _mask_query(url: str) -> str:
    def pair(match: re.Match[str]) -> str:
        name, value = match.group(2), match.group(3)
        if DEFAULT_SECRET_NAMES.in_query(name):
            value = URL_MASK
        elif ":" in unquote(value):  # KEY:value,KEY2:value2 (authMechanismProperties)
            value = _LIST_ENTRY.sub(
                lambda m: (
                    f"{m.group(1)}:{URL_MASK}" if DEFAULT_SECRET_NAMES(m.group(1)) else m.group(0)
                ),
                unquote(value),
            )
        return f"{match.group(1)}{name}={value}"

    return _QUERY_PAIR.sub(pair, url)


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that ``mask_url`` hides (password or token, secret query
    values), split where a parser might split them: a client library's error message about
    a malformed URL may quote any of them (``Port could not be cast ... 'pa'``)."""
    masked = mask_url(url)
    if masked == url:
        return []
    hidden: list[str] = []
    matcher = difflib.SequenceMatcher(None, url, masked, autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            hidden.append(url[start:end])
    pieces = {piece for text in hidden for piece in re.split(r"[:/@%]", text) if len(piece) >= 2}
    return sorted(pieces, key=len, reverse=True)


def without_secret_parts(message: str, url: str) -> str:
    """``message`` (a client library's, about ``url``) with the URL's secrets masked."""
    for piece in secret_parts(url):
        message = message.replace(piece, URL_MASK)
    return scrub_text(message, mask=URL_MASK)
