"""Which configuration fields load a model or grant running code, read from the schema itself.

Every field of :class:`~hybrid_retriever.config.RetrieverConfig` (in any section, nested
or in a list of branches) that names something to load or grants trust carries a marker
in its schema (``json_schema_extra={"x-security": ...}``):

* ``"model"``: a model reference (a Hugging Face id or a folder) that gets loaded;
* ``"trust"``: a grant to run a model's own Python code (``trust_remote_code``);
* ``"inert"``: a field whose name looks like one of the above but loads nothing
  (a store folder, a URL, a backend type name).

:func:`marked_fields` walks a raw configuration dict guided by that schema, so the
checks of configuration files (:func:`hybrid_retriever.config._granted`) and of
configurations stored in an index (:mod:`hybrid_retriever.stores.stored_config`) cover
today's sections and any added later. ``tests/test_security.py`` fails when a field
that looks like a model or a grant carries no marker.

>>> from hybrid_retriever.config import RetrieverConfig
>>> data = {"rerank": {"enabled": True, "model": "/m", "trust_remote_code": True}}
>>> [(".".join(map(str, f.path)), f.kind) for f in marked_fields(RetrieverConfig, data)]
[('rerank.model', 'model'), ('rerank.trust_remote_code', 'trust')]
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from pydantic import BaseModel

#: The schema key holding a field's marker.
MARKER = "x-security"
SecurityKind = Literal["model", "trust", "inert"]


@dataclass(frozen=True)
class MarkedField:
    """One marked field present in a configuration dict: ``container[key]`` holds its value."""

    path: tuple[str | int, ...]
    kind: SecurityKind
    container: dict[str, Any]
    key: str

    @property
    def value(self) -> Any:
        return self.container[self.key]

    @property
    def section(self) -> str:
        """The top-level section the field lives in (``branches``, ``rerank``, ...)."""
        return str(self.path[0])

    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


def marker(model: type[BaseModel], field: str) -> SecurityKind | None:
    """The marker of ``model.field``, or None."""
    extra = model.model_fields[field].json_schema_extra
    return extra.get(MARKER) if isinstance(extra, dict) else None  # type: ignore[return-value]


def marked_fields(model: type[BaseModel], data: Any, path: tuple[str | int, ...] = ()) -> Iterator[MarkedField]:
    """Every marked field (model reference, trust grant) present in ``data``, a dict shaped like ``model``.

    Unions (a branch of one of several kinds) resolve by their ``kind`` value; where that
    is missing or unknown, every candidate's markers apply, so nothing slips through.
    """
    if not isinstance(data, dict):
        return
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        kind = marker(model, name)
        if kind in ("model", "trust"):
            yield MarkedField(path + (name,), kind, data, name)
        for sub, item, item_path in _children(info.annotation, data[name], path + (name,)):
            yield from marked_fields(sub, item, item_path)


def model_classes(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every configuration class reachable from its fields (for schema-wide checks)."""
    seen: list[type[BaseModel]] = []
    todo = [model]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for info in cls.model_fields.values():
            todo.extend(_models_in(info.annotation))
    return seen


def _children(annotation: Any, value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[type[BaseModel], Any, tuple[str | int, ...]]]:
    """(class, dict, path) for each nested configuration object in ``value``."""
    classes = _models_in(annotation)
    if not classes:
        return
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for i, item in items:
        if not isinstance(item, dict):
            continue
        here = path if i is None else path + (i,)
        for cls in _resolve(classes, item):
            yield cls, item, here


def _resolve(classes: list[type[BaseModel]], item: dict[str, Any]) -> list[type[BaseModel]]:
    """The union member(s) ``item`` is: by its ``kind`` tag when it names one, else all of them."""
    if len(classes) == 1:
        return classes
    tagged = [c for c in classes if "kind" in c.model_fields and c.model_fields["kind"].default == item.get("kind")]
    return tagged or classes


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes inside an annotation (through Optional, Union, list, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for cls in _models_in(arg):
            if cls not in out:
                out.append(cls)
    return out
