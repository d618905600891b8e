"""PyLate / sentence-transformers-style ColBERT checkpoints.

Layout (e.g. ``answerdotai/answerai-colbert-small-v1`` in PyLate form,
``lightonai/GTE-ModernColBERT-v1``)::

    modules.json                       Transformer module, then one or more Dense modules
    config_sentence_transformers.json  query_prefix, document_prefix, query_length, document_length,
                                       do_query_expansion, attend_to_expansion_tokens, skiplist_words
    sentence_bert_config.json          do_lower_case
    config.json, model.safetensors     the transformer, tokenizer files beside it
    1_Dense/config.json                in_features, out_features, bias, activation_function
    1_Dense/model.safetensors          linear.weight (and linear.bias)

Encoding follows PyLate: the marker token is inserted after the first token (the
sequence is first cut to length - 1); queries are padded to ``query_length`` with
[MASK] tokens and keep all of them; documents drop padding and skiplist tokens;
vectors are L2-normalised.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hybrid_retriever.branches.late_interaction.checkpoint import (
    load_backbone,
    load_state_dict,
    load_tokenizer,
    read_json,
    token_id,
    weight_file,
)
from hybrid_retriever.branches.late_interaction.encoder import EncoderSettings, TokenEncoder
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.models.resolve import read_json_list

#: PyLate's defaults for settings a checkpoint leaves out.
DEFAULTS = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "do_query_expansion": True,
    "attend_to_expansion_tokens": False,
}

_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.GELU": "gelu",
}


def _modules(folder: Path) -> list[dict[str, Any]]:
    data = read_json_list(folder / "modules.json")
    return sorted(data, key=lambda m: int(m.get("idx", 0)))


def dense_modules(folder: Path) -> list[dict[str, Any]]:
    """The Dense projection modules listed in ``modules.json`` (empty when none or no file)."""
    if not (folder / "modules.json").is_file():
        return []
    return [m for m in _modules(folder) if str(m.get("type", "")).rsplit(".", 1)[-1] == "Dense"]


def is_pylate(folder: Path) -> bool:
    """A sentence-transformers folder whose modules include a Dense projection."""
    return bool(dense_modules(folder))


def _projection(folder: Path, modules: list[dict[str, Any]]) -> Any:
    import torch

    layers: list[Any] = []
    for m in modules:
        sub = folder / m.get("path", "")
        cfg = read_json(sub / "config.json")
        try:
            n_in, n_out = int(cfg["in_features"]), int(cfg["out_features"])
        except KeyError as exc:
            raise ConfigError(f"{sub / 'config.json'} lacks {exc}; a Dense module needs in_features and out_features") from None
        bias = bool(cfg.get("bias", True))
        wf = weight_file(sub)
        if wf is None:
            raise ConfigError(f"the Dense module in {sub} has no model.safetensors or pytorch_model.bin")
        sd = load_state_dict(wf)
        if "linear.weight" not in sd:
            raise ConfigError(f"{wf} has no 'linear.weight'; found {sorted(sd)[:5]}")
        linear = torch.nn.Linear(n_in, n_out, bias=bias)
        linear.load_state_dict({k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("linear.")})
        layers.append(linear)
        act = _ACTIVATIONS.get(str(cfg.get("activation_function", "torch.nn.modules.linear.Identity")))
        if act is None:
            raise ConfigError(f"unsupported Dense activation {cfg.get('activation_function')!r} in {sub}")
        if act != "identity":
            layers.append({"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[act]())
    return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)


def load(folder: Path, device: str, batch_size: int, query_length: int | None = None,
         document_length: int | None = None, trust_remote_code: bool = False) -> TokenEncoder:
    """A :class:`TokenEncoder` for the PyLate checkpoint in ``folder``."""
    modules = _modules(folder)
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), None)
    if transformer is None:
        raise ConfigError(f"{folder / 'modules.json'} lists no Transformer module")
    tdir = folder / transformer.get("path", "")
    st_cfg = read_json(folder / "config_sentence_transformers.json") if (folder / "config_sentence_transformers.json").is_file() else {}
    sb_cfg = read_json(tdir / "sentence_bert_config.json") if (tdir / "sentence_bert_config.json").is_file() else {}
    get = lambda key: st_cfg[key] if st_cfg.get(key) is not None else DEFAULTS.get(key)  # noqa: E731
    tokenizer = load_tokenizer(tdir, trust_remote_code)
    qp, dp = get("query_prefix"), get("document_prefix")
    q_id = token_id(tokenizer, qp, "query prefix", folder) if qp else None
    d_id = token_id(tokenizer, dp, "document prefix", folder) if dp else None
    words = st_cfg.get("skiplist_words")
    words = list(string.punctuation) if words is None else list(words)
    skip = frozenset(int(i) for i in (tokenizer.convert_tokens_to_ids(w) for w in words) if i is not None)
    expansion = bool(get("do_query_expansion"))
    settings = EncoderSettings(
        format="pylate",
        query_length=int(query_length or get("query_length")),
        document_length=int(document_length or get("document_length")),
        marker_style="insert",
        query_marker_id=q_id,
        document_marker_id=d_id,
        query_expansion=expansion,
        attend_to_expansion=bool(get("attend_to_expansion_tokens")) and expansion,
        skiplist_ids=skip,
        normalize=True,
        lowercase=bool(sb_cfg.get("do_lower_case", False)),
        strip=True,
    )
    backbone = load_backbone(tdir, trust_remote_code)
    projection = _projection(folder, [m for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] == "Dense"])
    return TokenEncoder(tokenizer, backbone, projection, settings, device=device, batch_size=batch_size)
