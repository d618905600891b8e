"""``train-reranker``: fine-tune a cross-encoder on the user's judged training queries.

Hard negatives come from the user's own hybrid index: each training query is searched
(fused, without reranking) and the union of those candidates is the pool from which
sentence-transformers' :func:`~sentence_transformers.util.mine_hard_negatives` picks
each query's negatives (judged positives of the query are never picked). Training is
sentence-transformers' :class:`CrossEncoderTrainer` with binary cross-entropy on
(query, document, 0/1) pairs. Checkpoints go to ``<out>/checkpoints`` and a rerun
resumes from the latest; the finished model is saved to ``<out>`` (safetensors) and
loads as ``rerank.model``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.models.resolve import resolve_model_path

log = logging.getLogger(__name__)

#: The base model when none is named (its encoder weights; the relevance head starts random).
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: What the finished folder records about its training (next to the weights).
TRAINING_FILE = "hybrid_retriever_training.json"


@dataclass
class TrainingSettings:
    """How the reranker is trained (every field is recorded in the output folder)."""

    base_model: str = DEFAULT_BASE_MODEL
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    num_negatives: int = 4
    mine_depth: int = 30
    skip_top: int = 0
    relative_margin: float | None = 0.05
    #: Tokens per document when embedding the negative pool (None = the mining model's own limit).
    mining_max_length: int | None = None
    seed: int = 0
    save_steps: int = 100
    min_grade: int = 1


@dataclass
class TrainingResult:
    """What :func:`train_reranker` did: the model folder, the data it saw and how long it took."""

    model_dir: str
    settings: TrainingSettings
    n_queries: int
    n_positives: int
    n_pairs: int
    candidate_pool: int
    steps: int
    resumed_from: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Mean training loss over the run (binary cross-entropy); a value that stays near its start means the model
    #: did not learn (too few steps or too low a learning rate).
    train_loss: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "settings": asdict(self.settings)}


def _positives(retriever: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
               min_grade: int) -> list[tuple[str, str, str]]:
    """(query id, query text, positive text) for every judged-relevant document found in the index."""
    wanted = {q: [d for d, g in qrels.get(q, {}).items() if g >= min_grade] for q in queries}
    ids = sorted({d for ds in wanted.values() for d in ds})
    texts = {doc.id: doc.text for s in range(0, len(ids), 1000) for doc in retriever.get(ids[s : s + 1000])}
    missing = [d for d in ids if d not in texts]
    if missing:
        log.warning("%d judged documents are not in the index (e.g. %s); they are left out", len(missing), missing[:3])
    return [(q, queries[q], texts[d]) for q in queries for d in wanted[q] if d in texts]


def _mining_model(retriever: Any, settings: TrainingSettings) -> Any:
    """The index's own dense encoder (the one that built it), else the base model as a bi-encoder.

    With ``mining_max_length`` a separate copy is loaded with that limit, so the index's
    encoder is never changed under concurrent searches.
    """
    from sentence_transformers import SentenceTransformer

    name = settings.base_model
    for branch in retriever.branches.values():
        model = getattr(branch, "model", None)
        if model is not None and callable(getattr(model, "encode_document", None)):
            if settings.mining_max_length is None:
                return model
            name = getattr(getattr(branch, "config", None), "model", name)
            break
    model = SentenceTransformer(resolve_model_path(name), model_kwargs={"use_safetensors": True})
    if settings.mining_max_length is not None:
        model.max_seq_length = settings.mining_max_length
    return model


def mine_negatives(retriever: Any, pairs: list[tuple[str, str, str]], settings: TrainingSettings,
                   cache_folder: Path | None = None, progress: bool = True) -> tuple[Any, int]:
    """Labelled (query, document, 0/1) pairs: the positives and hard negatives mined from the index.

    Returns the dataset and the size of the candidate pool (documents the index returned).
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    texts = list(dict.fromkeys(q for _, q, _ in pairs))
    hits = retriever.search_batch(texts, k=settings.mine_depth, rerank=False)
    pool = list(dict.fromkeys(h.text for hs in hits for h in hs))
    needed = settings.skip_top + settings.num_negatives
    if len(pool) < needed + 1:
        raise InvalidInputError(
            f"the index returned {len(pool)} candidate documents for the training queries; mining "
            f"{settings.num_negatives} negatives needs more: index more documents or lower num_negatives"
        )
    data = Dataset.from_dict({"query": [q for _, q, _ in pairs], "positive": [p for _, _, p in pairs]})
    mined = mine_hard_negatives(
        data,
        _mining_model(retriever, settings),
        corpus=pool,
        range_min=settings.skip_top,
        range_max=min(len(pool) - 1, settings.skip_top + max(settings.mine_depth, settings.num_negatives)),
        relative_margin=settings.relative_margin,
        num_negatives=settings.num_negatives,
        sampling_strategy="top",
        output_format="labeled-pair",
        batch_size=64,
        cache_folder=str(cache_folder) if cache_folder is not None else None,
        verbose=progress,
    )
    return mined, len(pool)


def _latest_checkpoint(folder: Path) -> str | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(found[-1]) if found else None


def train_reranker(
    retriever: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    out_dir: str | Path,
    settings: TrainingSettings | None = None,
    *,
    progress: bool = True,
    resume: bool = True,
) -> TrainingResult:
    """Fine-tune a cross-encoder on ``queries`` (training queries only) judged by ``qrels``.

    ``retriever`` is the hybrid index the negatives are mined from. The model is saved to
    ``out_dir`` (safetensors); with ``resume`` a rerun continues from the latest checkpoint.
    """
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    s = settings or TrainingSettings()
    if s.num_negatives < 1:
        raise InvalidInputError("num_negatives must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    seconds: dict[str, float] = {}
    set_seed(s.seed)

    t0 = time.perf_counter()
    pairs = _positives(retriever, queries, qrels, s.min_grade)
    if not pairs:
        raise InvalidInputError("no training query has a judged-relevant document in the index; check the qrels and the index")
    dataset, pool = mine_negatives(retriever, pairs, s, cache_folder=out / "mining-cache", progress=progress)
    seconds["mining"] = time.perf_counter() - t0
    log.info("mined %d labelled pairs for %d queries from a pool of %d documents", len(dataset), len(queries), pool)

    t1 = time.perf_counter()
    model = CrossEncoder(
        resolve_model_path(s.base_model), num_labels=1, max_length=s.max_length,
        model_kwargs={"use_safetensors": True},
    )
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=s.epochs,
        per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        warmup_ratio=s.warmup_ratio,
        seed=s.seed,
        data_seed=s.seed,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        logging_steps=max(1, s.save_steps // 4),
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
    )
    # Negatives outnumber positives num_negatives to one: weigh positives up to balance them.
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(s.num_negatives)))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    resumed = _latest_checkpoint(checkpoints) if resume else None
    if resumed:
        log.info("resuming training from %s", resumed)
    state = trainer.train(resume_from_checkpoint=resumed)
    seconds["training"] = time.perf_counter() - t1
    model.save_pretrained(str(out), safe_serialization=True)
    result = TrainingResult(
        model_dir=str(out), settings=s, n_queries=len({q for q, _, _ in pairs}), n_positives=len(pairs),
        n_pairs=len(dataset), candidate_pool=pool, steps=int(state.global_step), resumed_from=resumed, seconds=seconds,
        train_loss=float(state.training_loss) if state.training_loss is not None else None,
    )
    (out / TRAINING_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return result
