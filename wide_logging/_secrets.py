"""Recognising secrets: by the name they are stored under, and inside free text and URLs.

Theory of operation
-------------------
A value is a secret when its *key* says so (``authorization``, ``api_key``,
``user.session`` with ``redact=["session"]``, ``HTTP_AUTHORIZATION``, ``authHeader``):
:class:`SecretNames` decides, per dotted part of the key, from a set of exact names and a
pattern, after normalising case, camelCase, ``_``/``-``/spaces and URL encoding. That
covers dicts, dotted annotation keys and header lists, and it is cheap (cached per key).

Free text is the other way in: a log message that prints a URL with ``?token=``, an
exception whose message holds ``user:pass@host``, a logged ``dict(request.headers)``, a
dataclass repr. :func:`scrub_text` finds the places where text *names* a value —
``key=value``, ``key='value'``, ``Key: value``, ``'key': 'value'`` (any value: a string, a
number, a list or dict), ``('key', 'value')``, ``<key>value</key>``, URL userinfo (with or
without a scheme), ``Bearer <token>``, ``Basic <user:pass>``, a JWT, a PEM private key —
and masks the value when the name is a secret's. A cheap gate (:func:`needs_scrub`) lets
ordinary strings through untouched.

Every pass runs in linear time: names are found at token starts only (a look-behind), and
values are read by hand up to their end, so text crafted to make a regular expression
backtrack (``"://" + "a." * 4000``) costs what its length does.

:func:`mask_url` is the one masker for URLs in our own messages, metric labels and CLI
output. It reads userinfo the way the clients do (everything up to the last ``@`` of the
authority), and also masks what only looks like a password because the user wrote an
unencoded ``/``, ``#``, ``?`` or ``@`` into it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

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
        if len(self._cache) < self._CACHE_LIMIT:
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

# -- free text ------------------------------------------------------------------------

#: Text without one of these characters, or one of the words in ``needs_scrub``, cannot
#: hold a secret in a form we recognise. (One character class: an alternation of the
#: words in the same regex is several times slower on ordinary text.)
_GATE = re.compile(r"[=<:\"']")
#: Ends of a URL's authority, and of free-text tokens.
_NETLOC_END = re.compile(r"[/?#\s\"'<>\\]")
_TOKEN_END = re.compile(r"[\s\"'<>\\]")
#: ``user:pass@host`` with no scheme (``bob:pw@db:5432``), at a token start.
_BARE_USERINFO = re.compile(
    r"(?<![\w.:/@%+\-])(?!(?:mailto|tel|sips?|urn|xmpp|news|data):)"
    r"([\w.+\-]{1,64}):([^\s@/:\"'<>]{1,256})@(?=[\w\[])"
)
#: ``'name'`` / ``"name"`` / ``\"name\"`` followed by ``:``, ``,`` or ``=``: a dict or
#: tuple repr, JSON (also JSON inside a JSON string).
_QUOTED_NAME = re.compile(r"(\\*[\"'])([^\"'\\\s/]{1,128})\1(\s*[:,=]\s*b?)")
#: Characters of a name before ``:`` (``Name: value``: a header line, YAML) and before
#: ``=`` (``name=value``: queries, forms, logfmt, kwargs in a repr). Names are found by
#: looking back from each separator: a look-behind regex scanning every position of the
#: text is several times slower on the ordinary text that passes the gate.
_HEADER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_ASSIGNMENT_NAME_CHARS = _HEADER_NAME_CHARS | frozenset("[]%")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_%")
_BEARER = re.compile(r"\b([Bb]earer|BEARER)(\s+)[A-Za-z0-9\-._~+/]+=*")
_BASIC = re.compile(r"\bBasic\s+([A-Za-z0-9+/]{6,}={0,2})")
_JWT = re.compile(r"(?<![A-Za-z0-9_\-.])eyJ[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*){1,2}")
_XML = re.compile(r"<([A-Za-z_][\w.\-:]{0,63})>([^<]{1,4096})</\1>")
_PEM = re.compile(
    r"(-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----)[\s\S]{0,20000}?"
    r"(-----END [A-Z ]{0,20}PRIVATE KEY-----)"
)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----")
#: An element still open where a size cap cut the text, and the cap's marker.
_XML_CUT = re.compile(r"<([A-Za-z_][\w.\-:]{0,63})>([^<]{1,4096}?)(\.\.\.\[truncated [^\]<]*\])?$")
_CLOSERS = {"[": "]", "{": "}", "(": ")"}
#: ``'value': `` after a quoted secret name and a comma: ``{'name': 'X-Api-Key', 'value': ...}``
_VALUE_KEY = re.compile(r"(\\*[\"'])value\1\s*:\s*")
_QUOTE_START = re.compile(r"\\*[\"']")
_LINE_VALUE_END = re.compile(r"[\r\n\"'\\]")
_NEXT_LINE = re.compile(r"\r?\n([ \t]+)([^\r\n]*)")
_TOKEN_VALUE_END = re.compile(r"[\s&#\"'<>\\,;)\]}]")
#: ``Authorization=Basic abc``: a scheme word is not the secret, the token after it is.
_AUTH_SCHEMES = frozenset({"basic", "bearer", "digest", "token", "negotiate", "ntlm", "hmac"})


def needs_scrub(text: str) -> bool:
    """False for text that cannot hold a recognisable secret (most text): the fast exit."""
    return not text.isalnum() and (
        _GATE.search(text) is not None
        or "earer" in text
        or "EARER" in text
        or "Basic " in text
        or "eyJ" in text
        or "PRIVATE KEY" in text
    )


def scrub_text(
    text: str, is_secret: Callable[[str], bool] | None = None, mask: str = REDACTED
) -> str:
    """``text`` with the values of secret-named keys, URL passwords, bearer and basic
    credentials, JWTs and private keys replaced by ``mask``. ``is_secret`` decides names
    (default: the default names)."""
    if not needs_scrub(text):
        return text
    names = is_secret if is_secret is not None else DEFAULT_SECRET_NAMES
    in_query = names.in_query if isinstance(names, SecretNames) else names

    colons = text.count(":")
    if colons and "@" in text:  # userinfo needs both
        if "://" in text:
            text = _mask_url_userinfo(text, mask)
        text = _BARE_USERINFO.sub(lambda m: f"{m.group(1)}:{mask}@", text)
    if "'" in text or '"' in text:
        text = _mask_values(text, _QUOTED_NAME, names, mask, name_group=2)
    if colons > text.count("://"):  # a colon that is not a URL's
        text = _mask_named(text, ":", _HEADER_NAME_CHARS, names, mask, to_line_end=True)
    if "=" in text:
        text = _mask_named(text, "=", _ASSIGNMENT_NAME_CHARS, in_query, mask)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + mask, text)
    if "Basic " in text:
        text = _BASIC.sub(lambda m: _masked_basic(m, mask), text)
    if "eyJ" in text:
        text = _JWT.sub(lambda m: mask if len(m.group(0)) >= 16 else m.group(0), text)
    if "</" in text:
        text = _XML.sub(
            lambda m: f"<{m.group(1)}>{mask}</{m.group(1)}>" if names(m.group(1)) else m.group(0),
            text,
        )
    if "PRIVATE KEY" in text:
        text = _PEM.sub(lambda m: f"{m.group(1)}{mask}{m.group(2)}", text)
        text = _mask_unclosed_pem(text, mask)
    if "...[truncated " in text and "<" in text:  # <password>... cut before its end tag
        text = _XML_CUT.sub(
            lambda m: (
                f"<{m.group(1)}>{mask}{m.group(3) or ''}" if names(m.group(1)) else m.group(0)
            ),
            text,
        )
    return text


def _mask_unclosed_pem(text: str, mask: str) -> str:
    """A private key whose END line is missing (cut by a size cap): all after BEGIN."""
    for begin in _PEM_BEGIN.finditer(text):
        rest = text[begin.end() :]
        if not rest.startswith(mask) and "-----END" not in rest:
            return text[: begin.end()] + mask
    return text


def _mask_values(
    text: str,
    name_pattern: re.Pattern[str],
    names: Callable[[str], bool],
    mask: str,
    *,
    name_group: int = 1,
    to_line_end: bool = False,
) -> str:
    """Mask the value after each name (+ separator) found by ``name_pattern`` that is a
    secret's name. The value is read by hand: a quoted string to its closing quote, a
    bracketed list or dict to its closing bracket, anything else to the end of the token
    (``to_line_end``: of the line; an empty value there is the next, indented line)."""
    parts: list[str] = []
    done = 0
    for match in name_pattern.finditer(text):
        if match.start() < done or not names(match.group(name_group)):
            continue
        start = match.end()
        if "," in match.group(3):  # ('X-Api-Key', 'value': ...) from a HAR list: that value
            value_key = _VALUE_KEY.match(text, start)
            if value_key is not None:
                start = value_key.end()
        stop = _value_end(text, start, to_line_end)
        if stop == start:
            continue  # an empty value: nothing to hide
        parts += [text[done:start], mask]
        done = stop
    return "".join([*parts, text[done:]]) if parts else text


def _mask_named(
    text: str,
    separator: str,
    name_chars: frozenset[str],
    names: Callable[[str], bool],
    mask: str,
    *,
    to_line_end: bool = False,
) -> str:
    """Mask the value after each ``name<separator>`` whose name is a secret's. Driven by
    the separators (``str.find``): the name is the run of ``name_chars`` before one (spaces
    allowed between), and must start with a letter, ``_`` or ``%``."""
    parts: list[str] = []
    done = 0
    header = separator == ":"
    # "Name: value" touches its colon ("Session : ouverte" is prose); "name = value" may
    # have spaces, even a line break (SQL, INI), on either side.
    gap_before = "" if header else " \t\r\n"
    gap_after = " \t" if header else " \t\r\n"
    at = text.find(separator)
    while at != -1:
        if header and text.startswith("//", at + 1):  # a URL's scheme
            at = text.find(separator, at + 1)
            continue
        end = at
        while end > done and text[end - 1] in gap_before:
            end -= 1
        begin = end
        while begin > done and end - begin < 128 and _is_name_char(text[begin - 1], name_chars):
            begin -= 1
        start = at + 1
        while start < len(text) and text[start] in gap_after:
            start += 1
        if (
            begin < end
            and (text[begin] in _NAME_START or (text[begin] > "\x7f" and text[begin].isalpha()))
            and (begin == 0 or not _is_name_char(text[begin - 1], name_chars))
            and names(text[begin:end])
        ):
            stop = _value_end(text, start, to_line_end)
            if stop > start:
                parts += [text[done:start], mask]
                done = stop
        at = text.find(separator, max(at + 1, done))
    return "".join([*parts, text[done:]]) if parts else text


def _closing_quote(text: str, start: int, quote: str) -> int:
    """The end of the quoted value at ``start``: past its closing quote; the end of the
    text when there is none. ``quote`` is ``"`` or ``'``, after ``k`` backslashes when the
    value is JSON inside a string (``k`` = 1) or deeper. A quote inside the value has more
    backslashes before it: the closing one has ``k`` (or ``k`` + a multiple of ``2k + 2``,
    escaped backslashes before it)."""
    mark = quote[-1]
    level = len(quote) - 1
    at = start + len(quote)
    while True:
        closing = text.find(mark, at)
        if closing == -1:
            return len(text)
        backslashes = 0
        while closing - backslashes > at and text[closing - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes >= level and (backslashes - level) % (2 * level + 2) == 0:
            return closing + 1
        at = closing + 1


def _closing_bracket(text: str, start: int) -> int:
    """Past the bracket that closes the one at ``start`` (at most 4,096 characters on)."""
    depth = 0
    for index in range(start, min(len(text), start + 4096)):
        char = text[index]
        if char in _CLOSERS:
            depth += 1
        elif char in _CLOSERS.values():
            depth -= 1
            if depth == 0:
                return index + 1
    return min(len(text), start + 4096)


def _is_name_char(char: str, name_chars: frozenset[str]) -> bool:
    """ASCII from the set; beyond ASCII any letter or digit (``token_accès``)."""
    return char in name_chars or (char > "\x7f" and char.isalnum())


def _value_end(text: str, start: int, to_line_end: bool) -> int:
    if start >= len(text):
        return start
    first = text[start]
    quote = _QUOTE_START.match(text, start, start + 8)
    if quote is not None:  # 'value', "value", \"value\" (JSON inside a string)
        return _closing_quote(text, start, quote.group(0))
    if first in _CLOSERS:  # ['a', 'b'] or {"k": "v"}: to the matching bracket
        return _closing_bracket(text, start)
    if to_line_end:
        end = _LINE_VALUE_END.search(text, start)
        stop = len(text) if end is None else end.start()
        if stop == start and text.startswith(("\n", "\r\n"), start):  # YAML: next line
            line = _NEXT_LINE.match(text, start)
            if line is not None and ":" not in line.group(2):
                return line.end()
        return stop
    end = _TOKEN_VALUE_END.search(text, start)
    stop = len(text) if end is None else end.start()
    if stop > start and text[stop - 1] == "(":  # ApiKey('sk_...'): the whole call
        return _closing_bracket(text, stop - 1)
    if text[start:stop].lower() in _AUTH_SCHEMES and text[stop : stop + 1] == " ":
        end = _TOKEN_VALUE_END.search(text, stop + 1)
        stop = len(text) if end is None else end.start()
    return stop


def _masked_basic(match: re.Match[str], mask: str) -> str:
    """``Basic <base64 of user:password>`` -> ``Basic ***``; any other word after "Basic"
    (prose: "Basic plan") is left alone."""
    token = match.group(1)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    if b":" not in decoded:
        return match.group(0)
    return match.group(0).replace(token, mask)


def _mask_url_userinfo(text: str, mask: str) -> str:
    """Every ``scheme://userinfo@host`` in ``text`` with the password masked. Token by
    token, each ``://`` looking only at its own authority: no scan is repeated."""
    return _TOKEN.sub(
        lambda m: _mask_token_userinfo(m.group(0), mask) if "://" in m.group(0) else m.group(0),
        text,
    )


_TOKEN = re.compile(r"[^\s\"'<>\\]+")


def _mask_token_userinfo(token: str, mask: str) -> str:
    parts: list[str] = []
    done = 0
    last_at = token.rfind("@")
    position = token.find("://")
    while position != -1:
        start = position + 3
        if start >= done:
            at = _userinfo_end(token, start, len(token), last_at)
            if at is not None:
                parts += [token[done:start], _masked_userinfo(token[start:at], mask), "@"]
                done = at + 1
        position = token.find("://", start)
    return "".join([*parts, token[done:]]) if parts else token


_PORT_ONLY = re.compile(r"[^:@/]*:\d*")


def _userinfo_end(text: str, start: int, token_end: int, last_at: int | None = None) -> int | None:
    """Where the userinfo that starts at ``start`` ends (its ``@``), or None.

    As clients read it: the last ``@`` before the authority ends. Beyond that, a password
    with an unencoded ``/``, ``#`` or ``?``: the last ``@`` of the token, when what comes
    before it has a ``user:password`` shape (and not a ``host:port/path/`` one).
    """
    end = _NETLOC_END.search(text, start, token_end)
    netloc_end = token_end if end is None else end.start()
    at = text.rfind("@", start, netloc_end)
    if at != -1:
        return at
    late = text.rfind("@", start, token_end) if last_at is None else last_at
    if late < netloc_end:
        return None
    authority = text[start:netloc_end]
    if ":" not in authority or _PORT_ONLY.fullmatch(authority):
        return None
    return late


def _masked_userinfo(userinfo: str, mask: str) -> str:
    if not userinfo:
        return ""
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{mask}" if colon else mask


# -- URLs in our own messages -----------------------------------------------------------

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def mask_url(url: str) -> str:
    """``url`` with any password, token or key replaced by ``***``; safe to print.

    Userinfo is what a client reads (up to the last ``@`` of the authority), or, when the
    password itself holds an unencoded ``/``, ``#`` or ``?`` (``redis://:pa/ss@host``),
    everything up to the last ``@``. A string that is not quite a URL (``redis:/u:pw@h``)
    loses everything between its first ``:`` and its last ``@``. Secret-named query values
    are masked, and so are secret-named entries of list-valued options
    (``authMechanismProperties=AWS_SESSION_TOKEN:...``).
    """
    if not isinstance(url, str):
        return mask_url(str(url))
    scheme = _SCHEME.match(url)
    if scheme is not None:
        start = scheme.end()
        end = _TOKEN_END.search(url, start)
        at = _userinfo_end(url, start, len(url) if end is None else end.start())
        if at is not None:
            url = url[:start] + _masked_userinfo(url[start:at], URL_MASK) + url[at:]
    elif "@" in url:  # not a URL we can parse: hide whatever could be a password
        colon, at = url.find(":"), url.rfind("@")
        if 0 <= colon < at:
            url = url[: colon + 1] + URL_MASK + url[at:]
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
    pieces = {piece for text in hidden for piece in re.split(r"[:/@%#?]", text) if len(piece) >= 2}
    return sorted(pieces, key=len, reverse=True)


def mask_credentials(text: str) -> str:
    """Hide passwords and tokens (URL userinfo, ``token=...``) inside an error message."""
    return scrub_text(text, mask=URL_MASK)


def without_secret_parts(message: str, url: str) -> str:
    """``message`` (a client library's, about ``url``) with the URL's secrets masked."""
    for piece in secret_parts(url):
        message = message.replace(piece, URL_MASK)
    return scrub_text(message, mask=URL_MASK)
