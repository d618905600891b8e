"""One filter form for every entry point, translated to both Qdrant back-ends.

The dict form matches metadata fields (dotted paths reach nested values); all
conditions must hold::

    {"source": "wiki"}                      # equals
    {"year": {"gte": 2020, "lt": 2024}}     # range: gt, gte, lt, lte
    {"lang": {"in": ["en", "de"]}}          # any of; "nin" = none of
    {"status": {"ne": "draft"}}             # not equal

Native filters pass through: a ``qdrant_client.models.Filter`` works on both
back-ends (translated for Qdrant Edge), a ``qdrant_edge.Filter`` on Edge only.
Native filters address payload paths, so metadata fields are ``metadata.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hybrid_retriever.errors import FilterError

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
    if isinstance(value, Mapping):
        if not value:
            raise FilterError(f"filter on {key!r} has no operator; use one of {list(_OPS)}")
        out = []
        for op, v in value.items():
            if op not in _OPS:
                raise FilterError(f"unknown filter operator {op!r} on {key!r}; use one of {list(_OPS)}")
            if op in ("in", "nin"):
                if not isinstance(v, (list, tuple, set)) or not v or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
                    raise FilterError(f"'{op}' on {key!r} needs a non-empty list of strings or integers")
                v = list(v)
            elif op in _RANGE_OPS:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise FilterError(f"'{op}' on {key!r} needs a number, got {v!r}")
            elif not isinstance(v, _SCALARS) or isinstance(v, float):
                raise FilterError(f"'{op}' on {key!r} needs a string, integer or boolean, got {v!r}")
            out.append(Condition(key, op, v))
        return out
    if isinstance(value, (list, tuple, set)):
        return _parse_field(key, {"in": list(value)})
    if isinstance(value, _SCALARS) and not isinstance(value, float):
        return [Condition(key, "eq", value)]
    raise FilterError(
        f"filter value for {key!r} must be a string, integer, boolean, list or operator dict, got {value!r}"
    )


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
                return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        raise FilterError(
            f"filter condition {name} is not supported on the Edge store; use match value/any/except/text, "
            "range, has_id, is_empty, is_null or nested conditions"
        )

    return qe.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not))
