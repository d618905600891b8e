"""Reading a checkpoint's files: JSON settings, weights, tokenizer, backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid_retriever.errors import ConfigError


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict (a clear error when it is not JSON)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def weight_file(folder: Path) -> Path | None:
    """The weights file of a Hugging Face / sentence-transformers folder, safetensors first."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` or ``.bin`` file (``.bin`` read with ``weights_only``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        import torch

        return dict(torch.load(str(path), map_location="cpu", weights_only=True))
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"cannot read the weights in {path}: {type(exc).__name__}: {exc}") from None


def load_tokenizer(folder: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer in {folder}: {exc}") from None


def load_backbone(folder: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoModel

    from hybrid_retriever.models.threads import apply_torch_threads

    apply_torch_threads()
    try:
        return AutoModel.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the transformer in {folder}: {exc}") from None


def token_id(tokenizer: Any, token: str, what: str, folder: Path) -> int:
    """The id of a marker token that must be in the vocabulary (never silently [UNK])."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        stripped = token.strip()
        if stripped != token:
            return token_id(tokenizer, stripped, what, folder)
        raise ConfigError(
            f"the {what} {token!r} named by the checkpoint in {folder} is not in its tokenizer's vocabulary; "
            "the checkpoint is incomplete (its tokenizer files must list the marker tokens it was trained with)"
        )
    return int(tid)
