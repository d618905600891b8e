"""What a stored document may carry: text and ids as valid Unicode, metadata as JSON-like values.

Qdrant stores payloads as JSON. Everything a caller hands in is checked (or converted)
here before anything is written, so bad input is one :class:`InvalidInputError` that
names the field and the fix, and nothing is half-stored.

Conversions (documented in the README and ``docs/security.md``):

* ``datetime`` -> ISO 8601 string (``datetime.isoformat()``; Qdrant reads a naive
  datetime as UTC) and ``date`` -> ``"YYYY-MM-DD"``, so range filters on them work
  (``{"published": {"gte": datetime(2024, 1, 1)}}``);
* tuples -> lists; numpy scalars -> Python numbers.

Refused: NaN and infinity (JSON has no such numbers), integers outside 64 bits
(Qdrant would silently round them to floats), sets (no order: pass a sorted list),
bytes, non-string keys, strings with lone surrogates (not encodable as UTF-8) and
any other object.

    >>> from datetime import date
    >>> storable_metadata({"day": date(2024, 5, 1), "tags": ("a", "b")})
    {'day': '2024-05-01', 'tags': ['a', 'b']}
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import Any, Mapping

from hybrid_retriever.errors import InvalidInputError

#: Qdrant stores integers as signed 64-bit numbers.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Nesting deeper than this is refused (a payload, not a data structure dump).
MAX_DEPTH = 32


def lone_surrogate_at(value: str) -> int | None:
    """Position of the first lone surrogate in ``value`` (not encodable as UTF-8), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(value: str, what: str) -> str:
    """``value`` if it is encodable as UTF-8, else an error naming ``what`` and the fix."""
    at = lone_surrogate_at(value)
    if at is not None:
        raise InvalidInputError(
            f"{what} is not valid Unicode: a lone surrogate {value[at]!r} at position {at}; "
            "fix the text, e.g. decode its source bytes with errors='replace'"
        )
    return value


#: Characters an id may not hold: C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_ID_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_id(value: str, what: str) -> str:
    """``value`` if it can name a document: valid Unicode without control characters or line breaks.

    An id travels in URLs (``GET /documents/{id}``), logs and terminals, where a newline or an
    escape character would be lost, split a log line or drive the terminal; such an id is refused
    on every path (add, get, delete) rather than stored and then unreachable.
    """
    check_text(value, what)
    bad = _ID_CONTROL.search(value)
    if bad is not None:
        raise InvalidInputError(
            f"{what} contains the control character {bad.group()!r} at position {bad.start()}; ids may not hold "
            "control characters or line breaks: remove or replace them (e.g. with '-')"
        )
    return value


def storable_metadata(metadata: Any, where: str = "metadata") -> dict[str, Any]:
    """A copy of ``metadata`` that Qdrant can store as-is (see the module docs for the rules)."""
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"{where} must be a dict of field -> value, got {type(metadata).__name__}")
    return _mapping(metadata, where, 0)


def _mapping(value: Mapping[Any, Any], where: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"{where} has key {key!r}; metadata keys must be non-empty strings")
        check_text(key, f"{where} key {key!r}")
        out[key] = _value(item, f"{where}.{key}", depth + 1)
    return out


def _value(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{where} is nested more than {MAX_DEPTH} levels deep; flatten the metadata")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_text(value, where)
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(
                f"{where} is {value}, outside 64-bit integers (Qdrant would round it); store it as a string"
            )
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            shown = "NaN" if math.isnan(value) else str(value)
            raise InvalidInputError(f"{where} is {shown}, which Qdrant cannot store; use null or a finite number")
        return value
    if isinstance(value, _dt.datetime) or isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _mapping(value, where, depth)
    if isinstance(value, (list, tuple)):
        return [_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item) and getattr(value, "ndim", None) == 0:
        return _value(item(), where, depth)  # numpy scalar -> Python number
    hint = "pass a sorted list" if isinstance(value, (set, frozenset)) else "convert it to a string, number, bool, list or dict"
    raise InvalidInputError(f"{where} is of type {type(value).__name__}, which cannot be stored as metadata; {hint}")


def as_list(items: Any, what: str, example: str) -> list[Any]:
    """``items`` as a list; one string or a non-iterable is an error naming ``what``."""
    if isinstance(items, (str, bytes)):
        raise InvalidInputError(f"{what} must be a list, not one string; e.g. {example}")
    try:
        return list(items)
    except TypeError:
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}; e.g. {example}") from None


def validate_ids(ids: Any) -> list[str]:
    """``ids`` as a list of document ids (non-empty strings that :func:`check_id` accepts)."""
    out = as_list(ids, "ids", "['doc-1', 'doc-2']")
    for i in out:
        if not isinstance(i, str) or not i:
            raise InvalidInputError(f"document ids must be non-empty strings, got {i!r}")
        check_id(i, f"document id {i!r}")
    return out
