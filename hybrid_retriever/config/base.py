"""What every configuration section shares: unknown keys are errors, errors read like a config file's,
and the schema markers that :mod:`hybrid_retriever.config_security` reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from hybrid_retriever.config_security import MARKER
from hybrid_retriever.errors import ConfigError


# Schema markers read by hybrid_retriever.config_security: a field that loads a model, one that
# grants running a model's own code, and one whose name looks like either but loads nothing.
LOADS_MODEL = {MARKER: "model"}
GRANTS_CODE = {MARKER: "trust"}
LOADS_NOTHING = {MARKER: "inert"}


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a config file must not pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignment is validated too; its errors read like a config file's (ConfigError).
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    """One readable line per problem, each naming the offending key."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{where}': remove it or check its spelling")
        elif err["type"] == "union_tag_invalid":
            lines.append(f"'{where}': {err['msg']}")
        else:
            lines.append(f"'{where}': {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
