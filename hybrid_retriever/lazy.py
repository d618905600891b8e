"""Package names imported on first use (PEP 562), so importing a package costs only what is used.

``hybrid-retriever --help`` imports the package without pydantic models, numpy or the
Qdrant client; the names a package exports load when first read.

>>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, {})
>>> getattr_("sqrt")(9.0)
3.0
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``exports`` (public name -> the module defining it).

    A name read once is kept in ``namespace`` (the package's globals), so later reads cost nothing.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
