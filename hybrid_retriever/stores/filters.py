"""One filter form for every entry point, translated to both Qdrant back-ends.

The dict form matches metadata fields (dotted paths reach nested values); all
conditions must hold::

    {"source": "wiki"}                      # equals
    {"year": {"gte": 2020, "lt": 2024}}     # range: gt, gte, lt, lte
    {"lang": {"in": ["en", "de"]}}          # any of; "nin" = none of
    {"status": {"ne": "draft"}}             # not equal
    {"published": {"gte": "2024-01-31"}}    # date range: datetime/date or ISO 8601 bounds

Native filters pass through: a ``qdrant_client.models.Filter`` works on both
back-ends (translated for Qdrant Edge), a ``qdrant_edge.Filter`` on Edge only.
Native filters address payload paths, so metadata fields are ``metadata.<field>``.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hybrid_retriever.errors import FilterError
from hybrid_retriever.payload import INT64_MAX, INT64_MIN, lone_surrogate_at

_RANGE_OPS = ("gt", "gte", "lt", "lte")
_OPS = ("eq", "ne", "in", "nin") + _RANGE_OPS
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Condition:
    """``metadata.<field> <op> value``."""

    field: str
    op: str
    value: Any


@dataclass
class FilterSpec:
    """A parsed filter: dict-form conditions, or a native Qdrant filter object."""

    conditions: list[Condition] = field(default_factory=list)
    native: Any = None

    def fields(self) -> set[str]:
        """Top-level metadata fields the filter reads (for the unknown-field check)."""
        if self.native is not None:
            return {k.split(".", 2)[1] for k in _native_keys(self.native) if k.startswith("metadata.") and k.count(".") >= 1}
        return {c.field.split(".")[0] for c in self.conditions}


def parse_filter(filter: Any) -> FilterSpec | None:
    """Validate a user filter (dict, native Qdrant filter, FilterSpec or None)."""
    if filter is None or isinstance(filter, FilterSpec):
        return filter
    if isinstance(filter, Mapping):
        if not filter:
            return None
        return FilterSpec(conditions=[c for key, value in filter.items() for c in _parse_field(key, value)])
    if _is_client_filter(filter) or _is_edge_filter(filter):
        return FilterSpec(native=filter)
    raise FilterError(
        f"unsupported filter type {type(filter).__name__}: use a dict such as "
        "{'source': 'wiki', 'year': {'gte': 2020}}, or a qdrant_client.models.Filter"
    )


def _parse_field(key: Any, value: Any) -> list[Condition]:
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
        raise FilterError(f"filter field {key!r} must be a non-empty metadata field name")
    _check_string(key, f"filter field {key!r}")
    if isinstance(value, Mapping):
        if not value:
            raise FilterError(f"filter on {key!r} has no operator; use one of {list(_OPS)}")
        out = []
        for op, v in value.items():
            if op not in _OPS:
                raise FilterError(f"unknown filter operator {op!r} on {key!r}; use one of {list(_OPS)}")
            if op in ("in", "nin"):
                v = _match_list(key, op, v)
            elif op in _RANGE_OPS:
                v = _range_bound(key, op, v)
            else:
                v = _match_value(key, op, v)
            out.append(Condition(key, op, v))
        return out
    if isinstance(value, (list, tuple, set)):
        return _parse_field(key, {"in": list(value)})
    if isinstance(value, _SCALARS) and not isinstance(value, float):
        return [Condition(key, "eq", _match_value(key, "eq", value))]
    raise FilterError(
        f"filter value for {key!r} must be a string, integer, boolean, list or operator dict, got {value!r}"
    )


def _check_string(value: str, what: str) -> None:
    if lone_surrogate_at(value) is not None:
        raise FilterError(f"{what} is not valid Unicode (it holds a lone surrogate); fix the text")


def _check_int(key: str, op: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise FilterError(f"'{op}' on {key!r}: {value} is outside 64-bit integers, which is all Qdrant stores")


def _match_value(key: str, op: str, v: Any) -> Any:
    """An exact-match value: a string, a 64-bit integer or a boolean."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        _check_string(v, f"'{op}' on {key!r}")
        return v
    if isinstance(v, int):
        _check_int(key, op, v)
        return v
    raise FilterError(f"'{op}' on {key!r} needs a string, integer or boolean, got {v!r}")


def _match_list(key: str, op: str, v: Any) -> list[Any]:
    """A non-empty list of strings only, or of integers only (Qdrant matches one kind per condition)."""
    example = f"{{{key!r}: {{{op!r}: ['a', 'b']}}}}"
    if not isinstance(v, (list, tuple, set)) or not v:
        raise FilterError(f"'{op}' on {key!r} needs a non-empty list of strings or integers, e.g. {example}")
    items = list(v)
    if all(isinstance(x, str) for x in items):
        for x in items:
            _check_string(x, f"'{op}' on {key!r}")
    elif all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        for x in items:
            _check_int(key, op, x)
    else:
        kinds = sorted({type(x).__name__ for x in items})
        raise FilterError(
            f"'{op}' on {key!r} needs a list of only strings or only integers, got {', '.join(kinds)}; "
            f"split it into two conditions, e.g. {example}"
        )
    return items


def _range_bound(key: str, op: str, v: Any) -> Any:
    """A range bound: a finite number, or a datetime/date (or ISO 8601 string) for date ranges."""
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()  # the form metadata dates are stored in (hybrid_retriever.payload)
    if isinstance(v, str):
        _check_string(v, f"'{op}' on {key!r}")
        try:
            _dt.datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith("Z") else v)
        except ValueError:
            raise FilterError(
                f"'{op}' on {key!r} needs a number or a date, got the string {v!r}; "
                "give an ISO 8601 date such as '2024-01-31' or '2024-01-31T12:00:00Z'"
            ) from None
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise FilterError(f"'{op}' on {key!r} needs a finite number or a date, got {v!r}")
    return v


def _is_client_filter(f: Any) -> bool:
    return type(f).__module__.startswith("qdrant_client") and type(f).__name__ == "Filter"


def _is_edge_filter(f: Any) -> bool:
    # qdrant_edge's classes report their module as "builtins", so test the class itself.
    import qdrant_edge as qe

    return isinstance(f, qe.Filter)


def _native_keys(f: Any) -> Iterable[str]:
    """Payload keys a native filter reads (client or edge form; nested filters included)."""
    for group in ("must", "should", "must_not"):
        conds = getattr(f, group, None) or []
        if not isinstance(conds, list):
            conds = [conds]
        for c in conds:
            key = getattr(c, "key", None)
            if isinstance(key, str):
                yield key
            inner = getattr(c, "filter", None)
            if inner is not None:
                yield from _native_keys(inner)
            if type(c).__name__ == "Filter":
                yield from _native_keys(c)


def _payload_key(field_name: str) -> str:
    return f"metadata.{field_name}"


# ----------------------------------------------------------------- qdrant-client


def to_client_filter(spec: FilterSpec | None, point_ids: Iterable[str] | None = None) -> Any:
    """The ``qdrant_client.models.Filter`` for ``spec``, restricted to ``point_ids`` when given."""
    from qdrant_client import models as m

    must: list[Any] = []
    must_not: list[Any] = []
    if spec is not None and spec.native is not None:
        if not _is_client_filter(spec.native):
            raise FilterError("a qdrant_edge.Filter only works with the Edge store; use a dict or qdrant_client.models.Filter")
        must.append(spec.native)
    elif spec is not None:
        for c in spec.conditions:
            key = _payload_key(c.field)
            if c.op == "eq":
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=c.value)))
            elif c.op == "ne":
                must_not.append(m.FieldCondition(key=key, match=m.MatchValue(value=c.value)))
            elif c.op == "in":
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=c.value)))
            elif c.op == "nin":
                must_not.append(m.FieldCondition(key=key, match=m.MatchAny(any=c.value)))
            elif isinstance(c.value, str):
                must.append(m.FieldCondition(key=key, range=m.DatetimeRange(**{c.op: c.value})))
            else:
                must.append(m.FieldCondition(key=key, range=m.Range(**{c.op: c.value})))
    if point_ids is not None:
        must.append(m.HasIdCondition(has_id=list(point_ids)))
    if not must and not must_not:
        return None
    return m.Filter(must=must or None, must_not=must_not or None)


# ------------------------------------------------------------------ qdrant-edge


def to_edge_filter(spec: FilterSpec | None, point_ids: Iterable[str] | None = None) -> Any:
    """The ``qdrant_edge.Filter`` for ``spec``, restricted to ``point_ids`` when given."""
    import qdrant_edge as qe

    must: list[Any] = []
    must_not: list[Any] = []
    if spec is not None and spec.native is not None:
        must.append(spec.native if _is_edge_filter(spec.native) else _client_to_edge(spec.native))
    elif spec is not None:
        for c in spec.conditions:
            key = _payload_key(c.field)
            if c.op == "eq":
                must.append(qe.FieldCondition(key=key, match=qe.MatchValue(_edge_value(c.value))))
            elif c.op == "ne":
                must_not.append(qe.FieldCondition(key=key, match=qe.MatchValue(_edge_value(c.value))))
            elif c.op == "in":
                must.append(qe.FieldCondition(key=key, match=qe.MatchAny(c.value)))
            elif c.op == "nin":
                must_not.append(qe.FieldCondition(key=key, match=qe.MatchAny(c.value)))
            elif isinstance(c.value, str):
                must.append(qe.FieldCondition(key=key, range=qe.RangeDateTime(**{c.op: c.value})))
            else:
                must.append(qe.FieldCondition(key=key, range=qe.RangeFloat(**{c.op: float(c.value)})))
    if point_ids is not None:
        must.append(qe.HasIdCondition(set(point_ids)))
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


def _edge_value(value: Any) -> Any:
    """A match value as Qdrant Edge must receive it.

    ``qdrant_edge.MatchValue(True)`` is taken as the integer 1 (bool is an int in
    Python), which matches no stored boolean; ``numpy.bool_`` reaches Edge as a bool.
    """
    if isinstance(value, bool):
        import numpy as np

        return np.bool_(value)
    return value


def _client_to_edge(f: Any) -> Any:
    """Translate a ``qdrant_client.models.Filter`` into Qdrant Edge's filter classes."""
    import qdrant_edge as qe

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        if not isinstance(items, list):
            items = [items]
        return [cond(c) for c in items]

    def cond(c: Any) -> Any:
        name = type(c).__name__
        if name == "Filter":
            return _client_to_edge(c)
        if name == "HasIdCondition":
            return qe.HasIdCondition({str(i) for i in c.has_id})
        if name == "IsEmptyCondition":
            return qe.IsEmptyCondition(c.is_empty.key)
        if name == "IsNullCondition":
            return qe.IsNullCondition(c.is_null.key)
        if name == "NestedCondition":
            return qe.NestedCondition(c.nested.key, _client_to_edge(c.nested.filter))
        if name == "FieldCondition":
            if c.match is not None:
                mname = type(c.match).__name__
                if mname == "MatchValue":
                    return qe.FieldCondition(key=c.key, match=qe.MatchValue(_edge_value(c.match.value)))
                if mname == "MatchAny":
                    return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.match.any)))
                if mname == "MatchExcept":
                    return qe.FieldCondition(key=c.key, match=qe.MatchExcept(list(c.match.except_)))
                if mname == "MatchText":
                    return qe.FieldCondition(key=c.key, match=qe.MatchText(c.match.text))
            if c.range is not None:
                r = c.range
                if type(r).__name__ == "DatetimeRange":
                    iso = {op: _iso(getattr(r, op)) for op in _RANGE_OPS}
                    return qe.FieldCondition(key=c.key, range=qe.RangeDateTime(**iso))
                return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        raise FilterError(
            f"filter condition {name} is not supported on the Edge store; use match value/any/except/text, "
            "range, has_id, is_empty, is_null or nested conditions"
        )

    return qe.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not))


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (_dt.datetime, _dt.date)) else value
