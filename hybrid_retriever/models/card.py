"""What a model's card (``README.md`` with YAML front matter) says about it: its languages.

Reading a card never runs code and never downloads: a local folder's ``README.md``, or
the copy in the local Hugging Face cache, is parsed with ``yaml.safe_load``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from hybrid_retriever.models.resolve import resolve_model_path

log = logging.getLogger(__name__)


def _card_text(model: str) -> str | None:
    path = Path(resolve_model_path(model)).expanduser()
    if path.is_dir():
        card = path / "README.md"
        return card.read_text(encoding="utf-8", errors="replace") if card.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "README.md")
    except Exception:  # not an id the hub library understands
        return None
    return Path(cached).read_text(encoding="utf-8", errors="replace") if isinstance(cached, str) else None


def card_languages(model: str) -> list[str] | None:
    """The ``language`` entry of ``model``'s card (codes such as ``en``, or ``multilingual``); None if absent."""
    text = _card_text(model)
    if not text or not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        log.debug("model card of %s has unreadable front matter", model)
        return None
    lang = meta.get("language") if isinstance(meta, dict) else None
    if isinstance(lang, str):
        return [lang]
    if isinstance(lang, list):
        return [str(x) for x in lang]
    return None


def branch_languages(config: Any) -> frozenset[str] | None:
    """Languages a branch's model covers: its configured ``languages``, else its card's; None = any or unknown.

    BM25 has no model (its analyzer follows the corpus): None.
    """
    from hybrid_retriever.languages import model_languages

    declared = getattr(config, "languages", None)
    model = getattr(config, "model_name", None) or getattr(config, "model", None)
    if declared is None and model:
        declared = card_languages(model)
    return model_languages(declared)
