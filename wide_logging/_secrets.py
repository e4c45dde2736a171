"""Secrets inside free text: :func:`scrub_text`.

A log message that prints a URL with ``?token=``, an exception whose message holds
``user:pass@host``, a logged ``dict(request.headers)``, a dataclass repr.
:func:`scrub_text` finds the places where text *names* a value — ``key=value``,
``key='value'``, ``Key: value``, ``'key': 'value'`` (any value: a string, a number, a list or
dict), ``('key', 'value')``, ``<key>value</key>``, URL userinfo (with or without a scheme),
``Bearer <token>``, ``Basic <user:pass>``, a JWT, a PEM private key — and masks the value
when the name is a secret's (``_secret_names``). A cheap gate (:func:`needs_scrub`) lets
ordinary strings through untouched.

Every pass runs in linear time: names are found at token starts only (a look-behind), and
values are read by hand up to their end, so text crafted to make a regular expression
backtrack (``"://" + "a." * 4000``) costs what its length does. URLs in our own messages
are masked by ``_urls.mask_url``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from ._secret_names import DEFAULT_SECRET_NAMES, REDACTED, URL_MASK, SecretNames
from ._urls import mask_url_userinfo, secret_parts

# -- free text ------------------------------------------------------------------------

#: Text without one of these characters, or one of the words in ``needs_scrub``, cannot
#: hold a secret in a form we recognise. (One character class: an alternation of the
#: words in the same regex is several times slower on ordinary text.)
_GATE = re.compile(r"[=<:\"']")
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
            text = mask_url_userinfo(text, mask)
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


def mask_credentials(text: str) -> str:
    """Hide passwords and tokens (URL userinfo, ``token=...``) inside an error message."""
    return scrub_text(text, mask=URL_MASK)


def without_secret_parts(message: str, url: str) -> str:
    """``message`` (a client library's, about ``url``) with the URL's secrets masked."""
    for piece in secret_parts(url):
        message = message.replace(piece, URL_MASK)
    return scrub_text(message, mask=URL_MASK)
