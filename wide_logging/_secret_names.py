"""Which keys name secrets: ``authorization``, ``api_key``, ``user.session`` with
``redact=["session"]``, ``HTTP_AUTHORIZATION``, ``authHeader``.

:class:`SecretNames` decides, per dotted part of the key, from a set of exact names and a
pattern, after normalising case, camelCase, ``_``/``-``/spaces and URL encoding. That
covers dicts, dotted annotation keys and header lists, and it is cheap (cached per key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from ._text import MAX_KEY

REDACTED = "[REDACTED]"
URL_MASK = "***"

#: Header and field names that are always secrets, compared after normalising (lowercase,
#: camelCase and ``_`` as ``-``) against each dotted part of a key.
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
        "pass",
        "passphrase",
        "jwt",
        "bearer",
        "dsn",
        "sig",
        "signature",
        "sid",
        "session-id",
        "sessionid",
        "phpsessid",
        "private-key",
        "client-secret",
    }
)
#: Any key part containing one of these is a secret too. Plural ``tokens`` and
#: ``sessions`` are counts (LLM usage, analytics), not secrets; the short words only count
#: as a whole word (``x-auth``, ``basic-auth``, never ``author`` or ``auth-method``).
DEFAULT_REDACT_PATTERN = (
    r"passw(?:or)?d|passphrase|secret(?!ary)|token(?!s)|api-?key|credential|private-?key|"
    r"cookie(?!-consent)|session(?!s|-count)|sessid|jwt|bearer|signature|authorization|"
    r"(?:^|-)(?<!is-)(?<!has-)(?:auth(?!-(?:method|type|provider|required|mode|status|scheme|mechanism|source|db|url|host|"
    r"server|realm|domain|enabled))"
    r"|pwd|pass|dsn|sig|sid)(?:-|$)"
)
#: Query parameters that carry keys or signatures although their names are generic.
_SECRET_QUERY_NAMES = frozenset({"key", "sig", "code", "access-key-id"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[_\s]+")


def normalize_key(key: str) -> str:
    """``HTTP_AUTHORIZATION``, ``authHeader``, ``Api Key``, ``user%5Bpassword%5D`` ->
    ``http-authorization``, ``auth-header``, ``api-key``, ``user[password]``."""
    if "%" in key:
        key = unquote(key)
    return _SEPARATORS.sub("-", _CAMEL.sub("-", key)).lower()


class SecretNames:
    """Decides whether a key names a secret. Configured once; safe to share."""

    __slots__ = ("_cache", "_keys", "_pattern")

    _CACHE_LIMIT = 4096

    def __init__(self, extra: Iterable[str] = (), pattern: re.Pattern[str] | None = None) -> None:
        # A dotted name ("user.ssn") redacts its last part wherever it appears.
        self._keys = DEFAULT_REDACT_KEYS | {
            normalize_key(key.strip()).rsplit(".", 1)[-1] for key in extra
        }
        self._pattern = pattern
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        """True when values under ``key`` must never leave the process."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        secret = any(self._part_is_secret(part) for part in normalize_key(key).split("."))
        # Only plain strings short enough to be stored as they are: the fast paths take a
        # key found here to need nothing more (a str subclass may claim to equal any name,
        # and a longer key is clipped by the full walk).
        if type(key) is str and len(key) <= MAX_KEY and len(self._cache) < self._CACHE_LIMIT:
            self._cache[key] = secret
        return secret

    @property
    def known(self) -> dict[str, bool]:
        """The decisions made so far, by key: a lookup here skips the call on a hot path."""
        return self._cache

    def _part_is_secret(self, part: str) -> bool:
        # Form fields and query arrays: user[password], credentials[0]; "Authorization:"
        part = part.strip("[]'\" :")
        if "[" in part:
            return any(self._part_is_secret(piece) for piece in re.split(r"[\[\]]+", part))
        if part in self._keys:
            return True
        pattern = self._pattern
        return pattern is not None and pattern.search(part) is not None

    def in_query(self, key: str) -> bool:
        """Like calling it, plus names that are secrets in a URL query (``key``, ``sig``)."""
        return self(key) or normalize_key(key) in _SECRET_QUERY_NAMES


DEFAULT_SECRET_NAMES = SecretNames(pattern=re.compile(DEFAULT_REDACT_PATTERN, re.IGNORECASE))
