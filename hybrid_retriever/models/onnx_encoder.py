"""Sentence embeddings from a cached ONNX export with ``tokenizers`` and numpy: no torch at all.

Importing torch, transformers and sentence-transformers takes 10-20 s on a busy CPU,
far more than a query. Once a model's ONNX export is cached
(:mod:`hybrid_retriever.models.onnx_backend`), a query needs none of them: the
tokeniser is the model's own ``tokenizer.json`` run by the ``tokenizers`` library, the
transformer is the export on ONNX Runtime, and pooling and normalisation are a few
numpy lines. :func:`load_light_encoder` builds such an encoder when the model folder
is one it reproduces step for step (a sentence-transformers folder of a transformer,
mean or CLS pooling, optional normalisation, no code of its own) and the cached export
is of exactly the folder's files (their hash, recorded at export); otherwise it
returns None and the caller loads sentence-transformers as before. The vectors equal
the torch path's (tests/test_coldstart.py compares tokens, vectors and rankings).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.errors import ModelCacheError
from hybrid_retriever.models.batching import token_slices
from hybrid_retriever.models.identity import weights_sha256
from hybrid_retriever.models.onnx_backend import (
    EXPORT_VERSION,
    MODEL_INPUTS,
    OnnxTransformer,
    export_folder,
    file_sha256,
    read_record,
)

log = logging.getLogger(__name__)

#: sentence-transformers module types this encoder reproduces (old and new import paths).
_TRANSFORMER = ("sentence_transformers.models.Transformer", "sentence_transformers.base.modules.Transformer",
                "sentence_transformers.base.modules.transformer.Transformer")
_POOLING = ("sentence_transformers.models.Pooling", "sentence_transformers.sentence_transformer.modules.Pooling",
            "sentence_transformers.sentence_transformer.modules.pooling.Pooling")
_NORMALIZE = ("sentence_transformers.models.Normalize", "sentence_transformers.base.modules.Normalize",
              "sentence_transformers.base.modules.normalize.Normalize")
#: Old boolean pooling keys -> mode.
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


class LightSentenceEncoder:
    """A sentence-transformers model's encode (tokenise, transformer, pool, normalise) without torch."""

    def __init__(
        self,
        tokenizer: Any,
        transformer: OnnxTransformer,
        *,
        pooling: str,
        normalize: bool,
        dimension: int,
        max_seq_length: int,
        prompts: dict[str, str],
        max_batch_tokens: int | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.pooling = pooling
        self.normalize = normalize
        self.dimension = dimension
        self.max_seq_length = max_seq_length
        self.prompts = prompts
        self.max_batch_tokens = max_batch_tokens

    def _features(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            out = hidden[np.arange(len(hidden)), mask.argmax(axis=1)]
        else:
            m = mask[:, :, None].astype(hidden.dtype)
            out = (hidden * m).sum(axis=1, dtype=np.float32) / np.maximum(m.sum(axis=1, dtype=np.float32), 1e-9)
        if self.normalize:  # the model's Normalize module; encode() normalises once more, as the torch path does
            out = _unit(out)
        return out

    def encode(self, texts: Sequence[str], prompt: str | None = None, batch_size: int = 32) -> np.ndarray:
        """Float32 unit vectors (texts × dimension), in order; longest texts are batched together."""
        texts = [prompt + t if prompt else t for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batched exactly as SentenceEncoder batches them (longest first, slices of max_batch_tokens).
        order = np.argsort([-len(t) for t in texts], kind="stable") if len(texts) > 1 else np.zeros(1, dtype=np.int64)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            features = self._features([texts[i] for i in idx])
            rows = 0
            for part in self._slices(features, len(idx)):
                emb = _unit(self._pool(self.transformer(part), part["attention_mask"]).astype(np.float32, copy=False))
                result[idx[rows : rows + len(emb)]] = emb
                rows += len(emb)
        return result

    def _slices(self, features: dict[str, np.ndarray], n: int) -> Any:
        mask = features["attention_mask"]
        if self.max_batch_tokens is None or n * mask.shape[1] <= self.max_batch_tokens:
            yield features
            return
        for start, stop, longest in token_slices(mask.sum(axis=1).tolist(), mask.shape[1], self.max_batch_tokens):
            yield {k: v[start:stop, :longest] for k, v in features.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (at least 1e-12), as ``torch.nn.functional.normalize``."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
    return x / np.maximum(norms, np.float32(1e-12))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pooling_mode(config: dict[str, Any]) -> str | None:
    if config.get("include_prompt") is False:
        return None
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _POOLING_FLAGS.items() if config.get(key)]
        mode = modes[0] if len(modes) == 1 else None
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else None
    return mode if mode in ("mean", "cls") else None


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def light_layout(folder: Path, max_seq_length: int | None) -> dict[str, Any] | None:
    """What the light encoder needs from a model folder, or None (with the reason logged) when it cannot reproduce it."""

    def no(why: str) -> None:
        log.debug("model %s loads sentence-transformers: %s", folder, why)
        return None

    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return no("no modules.json")
    types = [m.get("type") for m in modules]
    if len(types) not in (2, 3) or types[0] not in _TRANSFORMER or types[1] not in _POOLING:
        return no(f"modules {types} are not a transformer and its pooling")
    if len(types) == 3 and types[2] not in _NORMALIZE:
        return no(f"module {types[2]} is not a normalisation")
    if modules[0].get("path", "") not in ("", "."):
        return no("the transformer is not at the folder's root")
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict) or config.get("auto_map"):
        return no("config.json names code of its own (auto_map) or is missing")
    pooling = _read_json(folder / str(modules[1].get("path", "")) / "config.json")
    mode = _pooling_mode(pooling) if isinstance(pooling, dict) else None
    dimension = (pooling or {}).get("word_embedding_dimension") or (pooling or {}).get("embedding_dimension")
    if mode is None or not isinstance(dimension, int):
        return no("pooling is not plain mean or CLS pooling")
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    if st_config.get("do_lower_case") or set(st_config) - {"max_seq_length", "do_lower_case"}:
        return no("sentence_bert_config.json asks for more than a maximum length")
    length = max_seq_length or st_config.get("max_seq_length")
    if not isinstance(length, int) or length <= 0:
        return no("no maximum sequence length")
    tok_config = _read_json(folder / "tokenizer_config.json") or {}
    specials = _read_json(folder / "special_tokens_map.json") or {}
    pad = _token_content(tok_config.get("pad_token")) or _token_content(specials.get("pad_token"))
    if not (folder / "tokenizer.json").is_file() or pad is None:
        return no("no tokenizer.json or pad token")
    if tok_config.get("padding_side", "right") != "right":
        return no("the tokenizer pads on the left")
    st_meta = _read_json(folder / "config_sentence_transformers.json") or {}
    prompts = st_meta.get("prompts") or {}
    return {
        "pooling": mode,
        "normalize": len(types) == 3,
        "dimension": dimension,
        "max_seq_length": length,
        "pad_token": pad,
        "truncation_side": tok_config.get("truncation_side", "right"),
        "prompts": {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {},
    }


def load_light_encoder(
    model_folder: Path,
    export_name: str,
    variant: str,
    threads: int,
    *,
    max_seq_length: int | None = None,
    max_batch_tokens: int | None = None,
    cache_dir: Path | None = None,
) -> LightSentenceEncoder | None:
    """The torch-free encoder of the model in ``model_folder``, or None when its export is not cached and current.

    ``export_name`` is the name the export is cached under (as for
    :func:`~hybrid_retriever.models.onnx_backend.cached_export`). A cached ``model.onnx``
    that no longer matches its recorded hash is a :class:`ModelCacheError`, as on the torch path.
    """
    try:
        import onnxruntime  # noqa: F401
        from tokenizers import Tokenizer
    except ImportError:
        return None
    layout = light_layout(model_folder, max_seq_length)
    if layout is None:
        return None
    from hybrid_retriever.models.onnx_backend import default_cache_dir

    folder = export_folder(cache_dir or default_cache_dir(), export_name, variant)  # type: ignore[arg-type]
    record = read_record(folder)
    if (
        record is None
        or record.get("export_version") != EXPORT_VERSION
        or record.get("variant", "fp32") != variant
        or record.get("source_files_sha256") != weights_sha256(model_folder)
    ):
        log.debug("no current ONNX export of %s in %s: sentence-transformers loads to export it", model_folder, folder)
        return None
    names = tuple(n for n in MODEL_INPUTS if n in record.get("inputs", ()))
    if "input_ids" not in names or "attention_mask" not in names:
        return None
    model_path = folder / "model.onnx"
    actual = file_sha256(model_path)
    if actual != record.get("model_sha256"):
        raise ModelCacheError(
            f"the cached ONNX export {model_path} does not match the hash recorded when it was made "
            f"(recorded {str(record.get('model_sha256'))[:16]}…, found {actual[:16]}…): it was changed after export "
            f"and is not used. Delete the folder {folder} and it is exported again from the model's weights"
        )
    tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
    pad_id = tokenizer.token_to_id(layout["pad_token"])
    if pad_id is None:
        return None
    tokenizer.enable_truncation(max_length=layout["max_seq_length"], strategy="longest_first",
                                direction=layout["truncation_side"])
    tokenizer.enable_padding(pad_id=pad_id, pad_token=layout["pad_token"], pad_type_id=0, direction="right")
    transformer = OnnxTransformer(model_path, names, threads)
    log.info("model %s runs on its cached ONNX export (%s) without torch", model_folder, variant)
    return LightSentenceEncoder(
        tokenizer,
        transformer,
        pooling=layout["pooling"],
        normalize=layout["normalize"],
        dimension=layout["dimension"],
        max_seq_length=layout["max_seq_length"],
        prompts=layout["prompts"],
        max_batch_tokens=max_batch_tokens,
    )
