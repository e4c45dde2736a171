"""Dotted keys and nested dicts: how annotations become the event's objects.

``annotate(**{"user.id": 7})`` and ``annotate(user={"id": 7})`` are the same field;
merging never shares a dict that another thread may still write to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Merge ``source`` into ``target``; nested dicts merge, anything else replaces.

    ``source`` is a fresh copy that no other thread sees (cleaned annotations)."""
    for key, value in source.items():
        existing = target.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            deep_merge(existing, value)
        else:
            target[key] = value


def snapshot(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A copy to iterate while another thread may still write to the original.

    ``dict.copy()`` copies in C without running Python code, so no other thread can get
    the GIL half way; ``list(d.items())`` is not enough: it allocates a tuple per item, an
    allocation can start the garbage collector, and a finalizer run by it can let another
    thread in (seen: 1 event in ~1,000 under a test that races annotate() with finalize())."""
    return mapping.copy() if type(mapping) is dict else dict(mapping)


def nest_dotted(fields: Mapping[str, Any], max_depth: int = 10) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; keys without dots are kept as they are. At
    most ``max_depth`` levels: the rest of a longer key stays in its last part."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if "." not in key:
            deep_merge(out, {key: value})
            continue
        *parents, leaf = key.split(".", max_depth - 1)
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            deep_merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def nested_deep(node: dict[str, Any], max_depth: int) -> dict[str, Any]:
    """``node`` with dotted keys nested at every level (for the objects that hold library
    paths, where ``"response.status_code"`` must mean that path)."""
    if max_depth <= 0:
        return node
    out = nest_dotted(node, max_depth) if any("." in key for key in node) else dict(node)
    for key, value in out.items():
        if type(value) is dict:
            out[key] = nested_deep(value, max_depth - 1)
    return out


#: What :func:`pop_path` returns when nothing is at the path.
MISSING = object()


def pop_path(node: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Remove and return the value at ``path`` below ``node`` (``MISSING`` if absent),
    dropping dicts the removal leaves empty."""
    if len(path) == 1:
        return node.pop(path[0], MISSING)
    child = node.get(path[0])
    if type(child) is not dict:
        return MISSING
    found = pop_path(child, path[1:])
    if found is not MISSING and not child:
        del node[path[0]]
    return found
