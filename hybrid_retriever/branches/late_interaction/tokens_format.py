"""Token embeddings of any transformer encoder, without a projection head.

For a sentence-transformers folder (``modules.json``, e.g. all-MiniLM-L6-v2) the
transformer module's own tokenisation is used (text stripped, ``max_seq_length``
from ``sentence_bert_config.json``), so the dense branch and this branch can share
one forward pass (:class:`SharedForward`). For a plain Hugging Face folder the
length is the model's position limit. There are no marker tokens and no query
augmentation; documents drop padding and punctuation tokens; vectors are
L2-normalised last hidden states.
"""

from __future__ import annotations

import string
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.branches.late_interaction.checkpoint import load_backbone, load_tokenizer, read_json
from hybrid_retriever.branches.late_interaction.encoder import EncoderSettings, TokenEncoder
from hybrid_retriever.models.resolve import read_json_list


def _transformer_dir(folder: Path) -> tuple[Path, dict[str, Any]]:
    if (folder / "modules.json").is_file():
        for m in read_json_list(folder / "modules.json"):
            if str(m.get("type", "")).endswith("Transformer"):
                sub = folder / m.get("path", "")
                cfg = read_json(sub / "sentence_bert_config.json") if (sub / "sentence_bert_config.json").is_file() else {}
                return sub, cfg
    return folder, {}


def punctuation_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of single punctuation characters that the vocabulary holds as tokens (never [UNK])."""
    ids = set()
    for ch in string.punctuation:
        tid = tokenizer.convert_tokens_to_ids(ch)
        if tid is not None and tid != tokenizer.unk_token_id:
            ids.add(int(tid))
    return frozenset(ids)


def load(folder: Path, device: str, batch_size: int, query_length: int | None = None,
         document_length: int | None = None, trust_remote_code: bool = False,
         backbone: Any | None = None) -> TokenEncoder:
    """A :class:`TokenEncoder` over the last hidden states of the transformer in ``folder``.

    ``backbone`` reuses an already loaded transformer (the dense branch's) instead of loading it again.
    """
    tdir, sb_cfg = _transformer_dir(folder)
    tokenizer = load_tokenizer(tdir, trust_remote_code)
    model = backbone if backbone is not None else load_backbone(tdir, trust_remote_code)
    limit = sb_cfg.get("max_seq_length") or min(
        int(getattr(tokenizer, "model_max_length", 512) or 512),
        int(getattr(model.config, "max_position_embeddings", 512) or 512),
        512,
    )
    settings = EncoderSettings(
        format="tokens",
        query_length=int(query_length or limit),
        document_length=int(document_length or limit),
        marker_style="none",
        skiplist_ids=punctuation_ids(tokenizer),
        normalize=True,
        lowercase=bool(sb_cfg.get("do_lower_case", False)),
        strip=bool(sb_cfg) or (folder / "modules.json").is_file(),
    )
    return TokenEncoder(tokenizer, model, None, settings, device=device, batch_size=batch_size)


class SharedForward:
    """One forward pass of a sentence-transformers model feeding a dense and a token branch.

    Both branches ask for the same texts (the retriever encodes every branch's batch
    concurrently); the first request runs the model once and keeps the result until
    the other branch has taken its part: the sentence embeddings for the dense branch,
    the token states for the late-interaction branch. At most ``keep`` batches wait.
    """

    def __init__(self, sentence_encoder: Any, encoder: TokenEncoder, keep: int = 2) -> None:
        #: The dense branch's :class:`~hybrid_retriever.models.sentence_encoder.SentenceEncoder` (torch or ONNX Runtime).
        self.sentence_encoder = sentence_encoder
        self.encoder = encoder
        self.keep = keep
        self._lock = threading.Lock()
        self._pending: "OrderedDict[tuple[str, ...], tuple[Future[Any], set[str]]]" = OrderedDict()
        self.forward_passes = 0

    def _get(self, texts: Sequence[str], who: str) -> Any:
        key = tuple(texts)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None or who in entry[1]:
                entry = (Future(), set())
                self._pending[key] = entry
                owner = True
                while len(self._pending) > self.keep:
                    self._pending.popitem(last=False)
            else:
                owner = False
            entry[1].add(who)
            if len(entry[1]) >= 2 and self._pending.get(key) is entry:
                del self._pending[key]
        future = entry[0]
        if owner:
            try:
                future.set_result(self._run(list(texts)))
            except BaseException as exc:  # the waiting branch must see the failure too
                future.set_exception(exc)
        return future.result()

    def _run(self, texts: list[str]) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
        import torch

        enc = self.encoder
        self.forward_passes += 1
        order = np.argsort([-len(t) for t in texts], kind="stable")
        sentences = np.zeros((len(texts), self.sentence_encoder.st_model.get_embedding_dimension()), dtype=np.float32)
        states: list[Any] = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), enc.batch_size):
                idx = order[start : start + enc.batch_size]
                feats = enc.tokenize([texts[i] for i in idx], is_query=False)
                inputs = {k: v.to(enc.device) for k, v in feats.items() if not k.startswith("_")}
                out = self.sentence_encoder.forward({**inputs, "modality": "text"})
                sent = torch.nn.functional.normalize(out["sentence_embedding"].float(), p=2, dim=-1).cpu().numpy()
                for row, i in enumerate(idx):
                    real = feats["attention_mask"][row].bool()
                    sentences[i] = sent[row]
                    states[i] = (out["token_embeddings"][row][real.to(enc.device)], feats["input_ids"][row][real])
        return sentences, states

    def sentence_embeddings(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The dense branch's normalised sentence embeddings."""
        if not texts:
            return []
        sentences, _ = self._get(texts, "dense")
        return list(sentences)

    def token_vectors(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """The late-interaction branch's token vectors (skiplist for documents, normalised)."""
        import torch

        if not texts:
            return []
        enc = self.encoder
        if not is_query:
            enc._note_truncation(texts)
        _, states = self._get(texts, "tokens")
        out = []
        skip = torch.tensor(sorted(enc.settings.skiplist_ids), dtype=torch.long)
        for hidden, ids in states:
            keep = torch.ones_like(ids, dtype=torch.bool) if is_query or not len(skip) else ~torch.isin(ids, skip)
            out.append(enc.finish(hidden, keep, torch.ones_like(ids, dtype=torch.bool), is_query))
        return out
