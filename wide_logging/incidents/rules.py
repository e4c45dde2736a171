"""Incident rules: which events count, how they group, when a group is an incident.

A condition means the same wherever it is evaluated — here on a stored or passing event, and
on a MongoDB server (``incidents.mongo`` translates it). Both follow MongoDB's rules where
Python's differ: values compare only with values of their own kind (numbers, strings,
booleans, null: ``true`` is not ``1``), a missing field satisfies nothing but ``missing``,
``matches`` applies to strings only, and a condition's value is a JSON scalar (a list of
them for ``in``). Conditions on fields inside arrays, or holding them, are not supported:
MongoDB looks inside an array, this evaluator does not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ..fields import get_path

MISSING = object()
_OPERATORS = ("exists", "missing", "==", "!=", ">=", "<=", ">", "<", "in", "matches")
_CONDITION = re.compile(
    r"^\s*(?P<path>[A-Za-z_]\w*(?:\.\w+)*)\s+(?P<op>exists|missing|==|!=|>=|<=|>|<|in|matches)"
    r"(?:\s+(?P<value>.+?))?\s*$"
)
_PATH = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*")
#: Stored as a date by MongoDB and as text in files: compared alike by neither. ``--since``.
_NOT_A_RULE_PATH = "timestamp"
_INT64 = 2**63
#: The computed group key (not a stored field): error type + normalised message.
FINGERPRINT = "fingerprint"
#: The stored fields a fingerprint is computed from.
FINGERPRINT_FIELDS = ("error.type", "error.message")


# -- fingerprints ----------------------------------------------------------------------

_NORMALIZERS = (
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I),
     "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)  # fmt: skip


def normalize_message(message: str) -> str:
    """Strip what varies between occurrences of one failure: quoted values, ids, hex, numbers.

    ``"timeout after 31s for user 42"`` and ``"timeout after 17s for user 9"`` both become
    ``"timeout after <n>s for user <n>"``.
    """
    text = message[:2000]
    for pattern, replacement in _NORMALIZERS:
        text = pattern.sub(replacement, text)
    return text.strip()


def fingerprint(event: Mapping[str, Any]) -> str:
    """A short stable id of an event's failure: error type + normalised message."""
    error_type = get_path(event, FINGERPRINT_FIELDS[0], "")
    message = get_path(event, FINGERPRINT_FIELDS[1], "")
    material = f"{error_type}|{normalize_message(str(message))}"
    return hashlib.blake2b(material.encode(), digest_size=6).hexdigest()


def lookup(event: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; ``fingerprint`` is computed; absent: ``MISSING``."""
    if path == FINGERPRINT:
        return fingerprint(event)
    return get_path(event, path, MISSING)


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    path: str
    op: str
    value: Any = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``"http.response.status_code >= 500"``, ``"error exists"``, ``"x in [1, 2]"``."""
        found = _CONDITION.match(text)
        if found is None:
            msg = (
                f"condition {text!r} is not '<dotted.path> <op> [value]' "
                f"with op one of {', '.join(_OPERATORS)}"
            )
            raise ConfigurationError(msg)
        op, raw = found.group("op"), found.group("value")
        unary = op in ("exists", "missing")
        if unary != (raw is None):
            msg = f"condition {text!r}: '{op}' takes {'no' if unary else 'a'} value"
            raise ConfigurationError(msg)
        value: Any = None
        path = found.group("path")
        if path == _NOT_A_RULE_PATH:
            msg = f"condition {text!r}: select by time with --since, not a condition"
            raise ConfigurationError(msg)
        if raw is not None and op == "matches":
            try:
                value = re.compile(_pattern(raw))
            except re.error as exc:
                msg = f"condition {text!r}: bad regular expression: {exc}"
                raise ConfigurationError(msg) from None
        elif raw is not None:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw.strip("'\"")
            _check_value(text, op, value)
        return cls(path, op, value)

    @property
    def stored_paths(self) -> tuple[str, ...]:
        """The stored fields this condition reads."""
        return FINGERPRINT_FIELDS if self.path == FINGERPRINT else (self.path,)

    def holds(self, event: Mapping[str, Any]) -> bool:
        return self._test(lookup(event, self.path))

    @functools.cached_property
    def _test(self) -> Callable[[Any], bool]:
        """The test of a looked-up value, built once per condition: it runs for every
        stored event a summary reads."""
        op, expected = self.op, self.value
        if op == "exists":
            return lambda actual: actual is not MISSING and actual is not None
        if op == "missing":
            return lambda actual: actual is MISSING or actual is None
        if op == "==":
            return lambda actual: actual is not MISSING and _same(actual, expected)
        if op == "!=":
            return lambda actual: actual is not MISSING and not _same(actual, expected)
        if op == "in":
            options = tuple(expected)
            return lambda actual: actual is not MISSING and any(_same(actual, o) for o in options)
        if op == "matches":
            search = expected.search
            return lambda actual: isinstance(actual, str) and search(actual) is not None
        kind, compare = _kind(expected), _ORDER[op]
        # 5 > "4", True > 0: different kinds never compare
        return lambda actual: _kind(actual) == kind and bool(compare(actual, expected))


_ORDER = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _pattern(raw: str) -> str:
    """A regular expression as written: ``matches true`` is the text true, not JSON's
    ``true``; a double-quoted one is a JSON string (its escapes decoded), a single-quoted
    one is taken as it is between the quotes."""
    if raw.startswith('"'):
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError:
            return raw.strip('"')
        return decoded if isinstance(decoded, str) else raw
    if len(raw) > 1 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return raw


def _check_value(text: str, op: str, value: Any) -> None:
    """A value both evaluators read alike: a scalar, a list of them for ``in``; no null
    to order by (use ``exists`` / ``missing``)."""
    options = value if op == "in" else [value]
    if op == "in" and not isinstance(value, list):
        msg = f"condition {text!r}: 'in' takes a JSON list, like [500, 503]"
        raise ConfigurationError(msg)
    for option in options:
        if _kind(option) is None or (isinstance(option, float) and option != option):
            msg = f"condition {text!r}: the value must be a string, number, true, false or null"
            raise ConfigurationError(msg)
        if type(option) is int and not -_INT64 <= option < _INT64:
            msg = f"condition {text!r}: integers beyond 64 bits cannot be stored or compared"
            raise ConfigurationError(msg)
        if option is None and op in (">", ">=", "<", "<="):
            msg = f"condition {text!r}: null has no order; use 'exists' or 'missing'"
            raise ConfigurationError(msg)


_KINDS = {type(None): "null", bool: "bool", int: "number", float: "number", str: "string"}


def _kind(value: Any) -> str | None:
    """The kind a value compares within (MongoDB's type brackets), None: not a scalar."""
    kind = _KINDS.get(type(value))  # (by type first: this runs for every stored event)
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _same(actual: Any, expected: Any) -> bool:
    kind = _kind(actual)
    return kind is not None and kind == _kind(expected) and bool(actual == expected)


@dataclass(frozen=True)
class Rule:
    """Which events count, how they group, and when a group is an incident."""

    name: str
    match: tuple[Condition, ...]
    group_by: tuple[str, ...]
    window: float = 300.0
    threshold: int = 5
    quiet: float = 600.0
    title: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][\w-]*", self.name):
            msg = f"rule name must be a word, got {self.name!r}"
            raise ConfigurationError(msg)
        if not self.match:
            msg = f"rule {self.name!r} needs at least one match condition"
            raise ConfigurationError(msg)
        if not (
            1 <= self.threshold < 2**31 and 0 < self.window < math.inf and 0 < self.quiet < math.inf
        ):
            msg = (
                f"rule {self.name!r}: threshold from 1 to 2**31 - 1, window and quiet finite "
                "and above 0 are required"
            )
            raise ConfigurationError(msg)
        for path in self.group_by:
            if not isinstance(path, str) or not _PATH.fullmatch(path) or path == _NOT_A_RULE_PATH:
                msg = (
                    f"rule {self.name!r}: group_by takes dotted field paths like http.route "
                    f"(not timestamp), got {path!r}"
                )
                raise ConfigurationError(msg)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Rule:
        if not isinstance(spec, Mapping):
            msg = f"a rule is a table of name, match, group_by, ..., got {spec!r}"
            raise ConfigurationError(msg)
        unknown = set(spec) - {"name", "match", "group_by", "window", "threshold", "quiet", "title"}
        if unknown:
            msg = f"unknown rule field(s) {sorted(unknown)} in {spec.get('name', spec)!r}"
            raise ConfigurationError(msg)
        try:
            match = spec["match"]
            if isinstance(match, str):
                match = [match]
            group_by = spec.get("group_by", ())
            if not isinstance(match, list) or not all(isinstance(c, str) for c in match):
                msg = f"rule {spec.get('name')!r}: match takes a condition or a list of them"
                raise ConfigurationError(msg)
            if not isinstance(group_by, (list, tuple)):
                msg = f"rule {spec.get('name')!r}: group_by takes a list of field paths"
                raise ConfigurationError(msg)
            threshold = spec.get("threshold", 5)
            if isinstance(threshold, bool) or not isinstance(threshold, int):
                msg = f"rule {spec.get('name')!r}: threshold takes a whole number"
                raise ConfigurationError(msg)
            return cls(
                name=str(spec["name"]),
                match=tuple(Condition.parse(c) for c in match),
                group_by=tuple(group_by),
                window=float(spec.get("window", 300)),
                threshold=threshold,
                quiet=float(spec.get("quiet", 600)),
                title=str(spec.get("title", "")),
            )
        except KeyError as exc:
            msg = f"rule {spec!r} lacks the field {exc.args[0]!r}"
            raise ConfigurationError(msg) from None
        except ConfigurationError:
            raise
        except (TypeError, ValueError) as exc:  # window: "soon", ...
            msg = f"rule {spec.get('name')!r}: {exc}"
            raise ConfigurationError(msg) from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        return all(condition.holds(event) for condition in self.match)

    def group_of(self, event: Mapping[str, Any]) -> tuple[Any, ...]:
        values = (lookup(event, path) for path in self.group_by)
        return tuple(None if v is MISSING else v for v in values)

    @property
    def stored_paths(self) -> tuple[str, ...]:
        """Every stored field the rule reads to match and group (a fingerprint: the error's
        type and message), in order, once each."""
        paths: dict[str, None] = {}
        for condition in self.match:
            paths.update(dict.fromkeys(condition.stored_paths))
        for path in self.group_by:
            paths.update(dict.fromkeys(FINGERPRINT_FIELDS if path == FINGERPRINT else (path,)))
        return tuple(paths)

    def render_title(self, group: Mapping[str, Any]) -> str:
        if not self.title:
            shown = ", ".join(f"{k}={v}" for k, v in group.items() if v is not None)
            return f"{self.name}: {shown}" if shown else self.name
        return re.sub(r"\{([\w.]+)\}", lambda m: _shown(group.get(m.group(1))), self.title)


def _shown(value: Any) -> str:
    """A group value in a title: a missing or null one is "?" (an error without a type
    was titled "None on /x")."""
    return "?" if value is None else str(value)


#: The rules that ship: error bursts per route and error type, 5xx bursts, slow routes.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule.from_dict({
        "name": "error_burst",
        "match": ["kind == \"http.request\"", "error exists"],
        "group_by": ["service.name", "http.route", "error.type", "fingerprint"],
        "window": 300, "threshold": 5, "quiet": 600,
        "title": "{error.type} on {http.route}",
    }),
    Rule.from_dict({
        "name": "server_errors",
        "match": ["kind == \"http.request\"", "error missing", "http.response.status_code >= 500"],
        "group_by": ["service.name", "http.route", "http.response.status_code"],
        "window": 300, "threshold": 10, "quiet": 600,
        "title": "HTTP {http.response.status_code} on {http.route}",
    }),
    Rule.from_dict({
        "name": "latency_degradation",
        "match": ["kind == \"http.request\"", "duration_ms > 1000"],
        "group_by": ["service.name", "http.route"],
        "window": 300, "threshold": 10, "quiet": 600,
        "title": "slow requests on {http.route}",
    }),
)  # fmt: skip


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Rules from a ``.json``, ``.toml`` or ``.yaml`` file: a list under ``rules``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"rules file {path}: {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg) from None
    try:
        data = _parse_rules_file(path, text)
    except ConfigurationError:
        raise
    except Exception as exc:  # the parser's own error: JSON, TOML or YAML syntax
        msg = f"rules file {path} is not valid {path.suffix[1:].upper()}: {exc}"
        raise ConfigurationError(msg) from None
    specs = data.get("rules") if isinstance(data, Mapping) else data
    if not isinstance(specs, list) or not specs:
        msg = f"{path}: expected a non-empty list of rules (top level, or under 'rules')"
        raise ConfigurationError(msg)
    return tuple(Rule.from_dict(spec) for spec in specs)


def _parse_rules_file(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix == ".toml":
        try:
            import tomllib  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError as exc:  # Python 3.10
            msg = "TOML rule files need Python >= 3.11 (or use .json / .yaml)"
            raise ConfigurationError(msg) from exc
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            msg = "YAML rule files need PyYAML: pip install pyyaml (or use .json / .toml)"
            raise ConfigurationError(msg) from exc
        data = yaml.safe_load(text)
    else:
        msg = f"rules file must be .json, .toml or .yaml, got {path.name!r}"
        raise ConfigurationError(msg)
    return data
