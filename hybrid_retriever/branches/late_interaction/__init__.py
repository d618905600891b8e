"""Late-interaction (ColBERT-style) encoders: one module per checkpoint format.

:func:`load_encoder` reads a checkpoint folder (or a Hugging Face id in the local
cache) and returns a :class:`TokenEncoder` built from the checkpoint's own files:

- ``pylate``   sentence-transformers / PyLate ColBERT (``modules.json`` with a Dense projection);
- ``stanford`` colbert-ir checkpoints (``artifact.metadata``, ``HF_ColBERT``, a ``linear`` projection);
- ``tokens``   the last hidden states of any transformer, without a projection (chosen explicitly).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hybrid_retriever.branches.late_interaction import pylate_format, stanford_format, tokens_format
from hybrid_retriever.branches.late_interaction.encoder import EncoderSettings, EncodeStats, TokenEncoder
from hybrid_retriever.branches.late_interaction.muvera import FDEEncoder, FDEParams
from hybrid_retriever.branches.late_interaction.pooling import pool_tokens
from hybrid_retriever.branches.late_interaction.tokens_format import SharedForward
from hybrid_retriever.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("auto", "pylate", "stanford", "tokens")


def checkpoint_folder(name: str) -> Path:
    """The local folder of ``name``: a directory, a packaged model, or the Hugging Face cache (downloaded if reachable)."""
    from hybrid_retriever.models import ensure_available

    folder = ensure_available(name, f"late-interaction checkpoint {name!r}")
    if folder is not None:
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as exc:
        raise ConfigError(
            f"cannot download the late-interaction checkpoint {name!r} ({type(exc).__name__}: {exc}). Give a local "
            "folder, or a Hugging Face id that is already in the local cache"
        ) from None


def detect_format(folder: Path) -> str:
    """``pylate`` or ``stanford`` from the files in ``folder``; a :class:`ConfigError` otherwise."""
    if pylate_format.is_pylate(folder):
        return "pylate"
    if stanford_format.is_stanford(folder):
        return "stanford"
    raise ConfigError(
        f"{folder} is not a ColBERT checkpoint in a format this library reads. Expected either a PyLate / "
        "sentence-transformers ColBERT folder (modules.json listing a Transformer and a Dense projection, with "
        "query_prefix/document_prefix/query_length/document_length in config_sentence_transformers.json) or a "
        "Stanford colbert-ir folder (artifact.metadata, or config.json with architectures ['HF_ColBERT'], and "
        "weights holding the 'linear' projection). To use the token embeddings of a plain transformer without "
        "a projection, set format: tokens"
    )


def load_encoder(
    name: str,
    format: str = "auto",
    device: str = "cpu",
    batch_size: int = 32,
    query_length: int | None = None,
    document_length: int | None = None,
    trust_remote_code: bool = False,
    backbone: Any | None = None,
) -> TokenEncoder:
    """The encoder of checkpoint ``name`` (folder or Hugging Face id) in ``format``."""
    if format not in FORMATS:
        raise ConfigError(f"unknown late-interaction format {format!r}; choose one of {list(FORMATS)}")
    folder = checkpoint_folder(name)
    fmt = detect_format(folder) if format == "auto" else format
    kwargs = dict(
        device=device,
        batch_size=batch_size,
        query_length=query_length,
        document_length=document_length,
        trust_remote_code=trust_remote_code,
    )
    if fmt == "pylate":
        if not pylate_format.is_pylate(folder):
            raise ConfigError(f"{folder} has no modules.json with a Dense module, so it is not a PyLate checkpoint")
        enc = pylate_format.load(folder, **kwargs)
    elif fmt == "stanford":
        enc = stanford_format.load(folder, **kwargs)
    else:
        enc = tokens_format.load(folder, backbone=backbone, **kwargs)
    log.info("late-interaction encoder %s (%s): %d-d tokens", name, fmt, enc.dimension)
    return enc


__all__ = [
    "EncodeStats",
    "EncoderSettings",
    "FDEEncoder",
    "FDEParams",
    "SharedForward",
    "TokenEncoder",
    "checkpoint_folder",
    "detect_format",
    "load_encoder",
    "pool_tokens",
]
