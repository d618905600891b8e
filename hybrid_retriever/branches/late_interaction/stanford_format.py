"""Stanford ColBERT (``colbert-ir``) checkpoints, e.g. ``colbert-ir/colbertv2.0``.

Layout::

    config.json                  a BERT-family config, ``architectures: ["HF_ColBERT"]``
    model.safetensors | pytorch_model.bin
                                 the backbone under its base-model prefix (``bert.``) and the
                                 projection ``linear.weight`` (dim × hidden, no bias)
    artifact.metadata            JSON: query_token_id, doc_token_id ([unused0]/[unused1]),
                                 query_maxlen, doc_maxlen, mask_punctuation, attend_to_mask_tokens, dim
    vocab.txt, tokenizer files

Encoding follows ``colbert-ai``: text is prefixed with ". " whose token (position 1)
becomes the marker; queries are padded to ``query_maxlen`` and padding turns into
[MASK] (attended to only with ``attend_to_mask_tokens``); documents drop padding
and, with ``mask_punctuation``, the punctuation tokens; vectors are L2-normalised.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hybrid_retriever.branches.late_interaction.checkpoint import (
    load_state_dict,
    load_tokenizer,
    read_json,
    token_id,
    weight_file,
)
from hybrid_retriever.branches.late_interaction.encoder import EncoderSettings, TokenEncoder
from hybrid_retriever.errors import ConfigError

#: colbert-ai's ColBERTConfig defaults for settings ``artifact.metadata`` leaves out.
DEFAULTS = {
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
    "query_maxlen": 32,
    "doc_maxlen": 180,
    "mask_punctuation": True,
    "attend_to_mask_tokens": False,
}


def is_stanford(folder: Path) -> bool:
    """``artifact.metadata`` beside the weights, or a config naming the HF_ColBERT architecture."""
    if (folder / "artifact.metadata").is_file():
        return True
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            return "HF_ColBERT" in (read_json(cfg).get("architectures") or [])
        except ConfigError:
            return False
    return False


def _backbone(folder: Path, sd: dict[str, Any], trust_remote_code: bool) -> Any:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    prefix = f"{model.base_model_prefix}."
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not own:
        raise ConfigError(
            f"the weights in {folder} hold no '{prefix}*' tensors; a Stanford ColBERT checkpoint stores its "
            f"backbone under the '{prefix}' prefix beside 'linear.weight'"
        )
    missing, _unexpected = model.load_state_dict(own, strict=False)
    missing = [k for k in missing if not k.startswith("pooler.") and "position_ids" not in k]
    if missing:
        raise ConfigError(f"the weights in {folder} lack backbone tensors {missing[:5]}")
    return model


def load(folder: Path, device: str, batch_size: int, query_length: int | None = None,
         document_length: int | None = None, trust_remote_code: bool = False) -> TokenEncoder:
    """A :class:`TokenEncoder` for the Stanford ColBERT checkpoint in ``folder``."""
    import torch

    meta = read_json(folder / "artifact.metadata") if (folder / "artifact.metadata").is_file() else {}
    get = lambda key: meta[key] if meta.get(key) is not None else DEFAULTS[key]  # noqa: E731
    wf = weight_file(folder)
    if wf is None:
        raise ConfigError(f"{folder} has no model.safetensors or pytorch_model.bin")
    sd = load_state_dict(wf)
    if "linear.weight" not in sd:
        raise ConfigError(f"{wf} has no 'linear.weight': not a Stanford ColBERT checkpoint (its projection is missing)")
    tokenizer = load_tokenizer(folder, trust_remote_code)
    backbone = _backbone(folder, sd, trust_remote_code)
    w = sd["linear.weight"]
    linear = torch.nn.Linear(w.shape[1], w.shape[0], bias="linear.bias" in sd)
    linear.load_state_dict({k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("linear.")})
    skip: frozenset[int] = frozenset()
    if get("mask_punctuation"):
        skip = frozenset(
            int(tokenizer.encode(symbol, add_special_tokens=False)[0]) for symbol in string.punctuation
        )
    settings = EncoderSettings(
        format="stanford",
        query_length=int(query_length or get("query_maxlen")),
        document_length=int(document_length or get("doc_maxlen")),
        marker_style="replace",
        query_marker_id=token_id(tokenizer, get("query_token_id"), "query marker", folder),
        document_marker_id=token_id(tokenizer, get("doc_token_id"), "document marker", folder),
        query_expansion=True,
        attend_to_expansion=bool(get("attend_to_mask_tokens")),
        skiplist_ids=skip,
        normalize=True,
        lowercase=False,
        strip=False,
    )
    return TokenEncoder(tokenizer, backbone, linear, settings, device=device, batch_size=batch_size)
