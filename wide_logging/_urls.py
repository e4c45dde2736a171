"""URLs in our own messages, metric labels and CLI output: :func:`mask_url`.

It reads userinfo the way the clients do (everything up to the last ``@`` of the
authority), and also masks what only looks like a password because the user wrote an
unencoded ``/``, ``#``, ``?`` or ``@`` into it; secret-named query values too. The same
userinfo reading masks URLs inside free text (``_scrub``).
"""

from __future__ import annotations

import difflib
import re
from urllib.parse import unquote

from ._secret_names import DEFAULT_SECRET_NAMES, URL_MASK

#: Ends of a URL's authority, and of free-text tokens.
NETLOC_END = re.compile(r"[/?#\s\"'<>\\]")
TOKEN_END = re.compile(r"[\s\"'<>\\]")


def mask_url_userinfo(text: str, mask: str) -> str:
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
    end = NETLOC_END.search(text, start, token_end)
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
        end = TOKEN_END.search(url, start)
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
