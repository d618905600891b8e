"""``train-reranker``: fine-tune a cross-encoder on judged queries, then choose how to use it.

1. A seeded share of the judged queries is held out (:attr:`TrainingSettings.holdout`);
   the rest train.
2. Hard negatives come from the user's own hybrid index: each training query is searched
   (fused, without reranking); the union of those candidates is the pool, and each
   query's negatives are the pool documents nearest to it by the **vectors the index
   already holds** (its dense branch's; no document is embedded again), judged
   positives never picked. An index without a dense branch ranks the pool by the
   query's own fused order instead.
3. Training is sentence-transformers' :class:`CrossEncoderTrainer` with binary
   cross-entropy on (query, document, 0/1) pairs. Checkpoints go to
   ``<out>/checkpoints`` and a rerun resumes from the latest; the finished model is
   saved to ``<out>`` (safetensors) and loads as ``rerank.model``.
4. On the held-out queries, :func:`choose_rerank` picks the depth and the weight of the
   reranker score (weight 1 = the reranker's own order, 0 = the fused order) with
   :func:`~hybrid_retriever.evaluation.rerank.tune_rerank_weight`, the function
   ``tune --rerank-weights`` runs (cached reranker scores, cross-validation, the
   one-standard-error rule that keeps the fused order unless clearly beaten). A rerank
   configuration is written only when the choice beats the fused order on those
   queries; otherwise the numbers say why and none is written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.ids import point_id
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
    seed: int = 0
    save_steps: int = 100
    min_grade: int = 1
    #: Judged queries kept out of training to choose the rerank settings on: a share when below 1
    #: (0.2 = a fifth), a number of queries from 1 up; 0 trains on every query and chooses nothing.
    holdout: float = 0.2
    #: Rerank depths tried on the held-out queries (the cheaper one wins a tie).
    depths: tuple[int, ...] = (10, 20, 50)
    #: Weights of the reranker score tried (1 = the reranker's order, 0 = the fused order).
    weights: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    metric: str = "ndcg@10"
    folds: int = 5


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
    #: The judged queries kept out of training (the rerank settings are chosen on them).
    heldout: list[str] = field(default_factory=list)
    #: What the held-out queries chose (None without held-out queries).
    choice: "RerankChoice | None" = None

    def as_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "settings": asdict(self.settings)}
        out["choice"] = self.choice.as_dict() if self.choice is not None else None
        return out


@dataclass
class RerankChoice:
    """The rerank settings chosen on the held-out queries, or why none is worth using.

    ``per_depth`` holds, for each depth tried, the weight chosen and its cross-validated
    held-out score against the fused order's score on the same queries. ``accepted``:
    the chosen weight is above 0 and its held-out score beats the fused order's.
    """

    metric: str
    n_queries: int
    depth: int
    weight: float
    heldout_score: float
    fused_score: float
    accepted: bool
    reason: str
    per_depth: list[dict[str, Any]] = field(default_factory=list)

    @property
    def order(self) -> str:
        """``reranker`` for weight 1 (the same order, without the fused score), else ``interpolation``."""
        return "reranker" if self.weight >= 1.0 else "interpolation"

    def rerank_section(self, model: str, max_length: int) -> dict[str, Any]:
        """The ``rerank`` section this choice stands for."""
        return {"enabled": True, "model": model, "depth": self.depth, "order": self.order, "weight": self.weight,
                "max_length": max_length}

    def apply(self, config: Any, model: str, max_length: int) -> Any:
        """``config`` (a :class:`~hybrid_retriever.config.RetrieverConfig`) with this choice as its rerank section."""
        if not self.accepted:
            raise InvalidInputError(f"no rerank configuration to apply: {self.reason}")
        data = config.model_dump()
        data["rerank"].update(self.rerank_section(model, max_length))
        return type(config).validate_data(data)

    def header(self) -> str:
        return (f"rerank chosen by `hybrid-retriever train-reranker` on {self.n_queries} held-out judged queries: "
                f"depth {self.depth}, order {self.order}, weight {self.weight:g}; {self.metric} "
                f"{self.heldout_score:.4f} (cross-validated) vs {self.fused_score:.4f} fused")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positives(retriever: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
               min_grade: int) -> list[tuple[str, str, str, str]]:
    """(query id, query text, positive id, positive text) for every judged-relevant document found in the index."""
    wanted = {q: [d for d, g in qrels.get(q, {}).items() if g >= min_grade] for q in queries}
    ids = sorted({d for ds in wanted.values() for d in ds})
    texts = {doc.id: doc.text for s in range(0, len(ids), 1000) for doc in retriever.get(ids[s : s + 1000])}
    missing = [d for d in ids if d not in texts]
    if missing:
        log.warning("%d judged documents are not in the index (e.g. %s); they are left out", len(missing), missing[:3])
    return [(q, queries[q], d, texts[d]) for q in queries for d in wanted[q] if d in texts]


def _dense_branch(retriever: Any) -> Any:
    """The index's first dense branch (the vectors it holds rank the negative pool), or None."""
    for branch in retriever.branches.values():
        if branch.vector_spec.kind == "dense":
            return branch
    return None


def _nearest(retriever: Any, queries: list[str], hits: list[list[Any]], pool: list[str],
             positives: Mapping[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, dict[str, float]] | None]:
    """Per query text, pool document ids nearest first; and the similarities (None when ranked by fused order).

    With a dense branch the similarity is the cosine of the query's vector (encoded now,
    queries only) and the document vectors read back from the index.
    """
    branch = _dense_branch(retriever)
    if branch is None:
        log.info("the index has no dense branch: negatives are ranked by each query's fused order")
        return {q: [h.id for h in hs] for q, hs in zip(queries, hits)}, None
    wanted = list(dict.fromkeys([*pool, *(d for ds in positives.values() for d in ds)]))
    vectors: dict[str, Any] = {}
    by_pid = {point_id(d): d for d in wanted}
    pids = list(by_pid)
    for s in range(0, len(pids), 1000):
        for p in retriever.store.retrieve(pids[s : s + 1000], with_vectors=[branch.name]):
            v = p.vectors.get(branch.name)
            if v is not None:
                vectors[by_pid[p.point_id]] = v
    ids = [d for d in pool if d in vectors]
    docs = np.asarray([vectors[d] for d in ids], dtype=np.float32)
    docs /= np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
    qv = np.asarray(branch.encode_queries(queries), dtype=np.float32)
    qv /= np.maximum(np.linalg.norm(qv, axis=1, keepdims=True), 1e-12)
    sims = qv @ docs.T if len(ids) else np.zeros((len(queries), 0), dtype=np.float32)
    ranked: dict[str, list[str]] = {}
    similarity: dict[str, dict[str, float]] = {}
    for i, q in enumerate(queries):
        order = np.argsort(-sims[i], kind="stable")
        ranked[q] = [ids[j] for j in order]
        sim = {ids[j]: float(sims[i, j]) for j in order}
        for d in positives.get(q, []):  # the positives' own similarity, for the relative margin
            if d in vectors and d not in sim:
                v = np.asarray(vectors[d], dtype=np.float32)
                sim[d] = float(qv[i] @ (v / max(float(np.linalg.norm(v)), 1e-12)))
        similarity[q] = sim
    return ranked, similarity


def mine_negatives(retriever: Any, pairs: list[tuple[str, str, str, str]], settings: TrainingSettings,
                   judged: Mapping[str, set[str]] | None = None) -> tuple[Any, int]:
    """Labelled (query, document, 0/1) pairs: each positive and its hard negatives mined from the index.

    ``pairs`` are (query id, query text, positive id, positive text); ``judged`` the
    documents judged relevant per query id (never picked as negatives; default: the
    pairs' positives). For each pair the negatives are the pool documents nearest the
    query after the first ``skip_top``, within the ``skip_top + max(mine_depth,
    num_negatives)`` nearest, at most ``num_negatives``, and, with ``relative_margin``,
    only those less similar than ``(1 − relative_margin)`` × the positive's similarity.
    Returns the dataset and the size of the candidate pool (documents the index returned).
    """
    from datasets import Dataset

    texts = list(dict.fromkeys(q for _, q, _, _ in pairs))
    hits = retriever.search_batch(texts, k=settings.mine_depth, rerank=False)
    text_of = {h.id: h.text for hs in hits for h in hs}
    pool = list(text_of)
    needed = settings.skip_top + settings.num_negatives
    if len(pool) < needed + 1:
        raise InvalidInputError(
            f"the index returned {len(pool)} candidate documents for the training queries; mining "
            f"{settings.num_negatives} negatives needs more: index more documents or lower num_negatives"
        )
    if judged is None:
        judged = {}
        for qid, _, d, _ in pairs:
            judged.setdefault(qid, set()).add(d)  # type: ignore[union-attr]
    qid_of = {q: qid for qid, q, _, _ in pairs}
    positives = {q: sorted(judged.get(qid_of[q], set())) for q in texts}
    ranked, similarity = _nearest(retriever, texts, hits, pool, positives)
    window = settings.skip_top + max(settings.mine_depth, settings.num_negatives)
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for qid, q, pos_id, pos_text in pairs:
        rows["query"].append(q)
        rows["document"].append(pos_text)
        rows["label"].append(1.0)
        skip = judged.get(qid, set())
        candidates = [d for d in ranked[q] if d not in skip][settings.skip_top : window]
        if settings.relative_margin is not None and similarity is not None and pos_id in similarity[q]:
            ceiling = similarity[q][pos_id] * (1.0 - settings.relative_margin)
            candidates = [d for d in candidates if similarity[q][d] <= ceiling]
        for d in candidates[: settings.num_negatives]:
            rows["query"].append(q)
            rows["document"].append(text_of[d])
            rows["label"].append(0.0)
    return Dataset.from_dict(rows), len(pool)


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

    train_q, held_q = split_holdout(list(queries), s.holdout, s.seed)
    log.info("training on %d judged queries, %d held out to choose the rerank settings", len(train_q), len(held_q))
    t0 = time.perf_counter()
    pairs = _positives(retriever, {q: queries[q] for q in train_q}, qrels, s.min_grade)
    if not pairs:
        raise InvalidInputError("no training query has a judged-relevant document in the index; check the qrels and the index")
    judged = {q: {d for d, g in qrels.get(q, {}).items() if g >= s.min_grade} for q in train_q}
    dataset, pool = mine_negatives(retriever, pairs, s, judged)
    seconds["mining"] = time.perf_counter() - t0
    log.info("mined %d labelled pairs for %d queries from a pool of %d documents", len(dataset), len(train_q), pool)

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
        model_dir=str(out), settings=s, n_queries=len({q for q, _, _, _ in pairs}), n_positives=len(pairs),
        n_pairs=len(dataset), candidate_pool=pool, steps=int(state.global_step), resumed_from=resumed, seconds=seconds,
        train_loss=float(state.training_loss) if state.training_loss is not None else None, heldout=held_q,
    )
    (out / TRAINING_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    if held_q:
        t2 = time.perf_counter()
        result.choice = choose_rerank(retriever, str(out), {q: queries[q] for q in held_q}, qrels, s,
                                      cache_dir=out / "selection-cache", progress=progress)
        seconds["selection"] = time.perf_counter() - t2
        (out / TRAINING_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def split_holdout(qids: Sequence[str], holdout: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, held-out) query ids: a seeded sample of ``holdout`` (a share below 1, else a count) held out.

    At least two queries are held out when ``holdout`` is above 0 (the choice is
    cross-validated over them). Both keep the given order. Raises when nothing would be
    left to train on.

    >>> split_holdout(["a", "b", "c", "d", "e"], 0.4, seed=0)
    (['a', 'b', 'c'], ['d', 'e'])
    """
    n = len(qids)
    if holdout < 0:
        raise InvalidInputError(f"holdout must be 0 or more (a share below 1, or a number of queries), got {holdout}")
    count = int(holdout) if holdout >= 1 else int(round(holdout * n))
    if holdout > 0:
        count = max(count, 2)
    if count >= n:
        raise InvalidInputError(
            f"holding out {count} of {n} judged queries leaves none to train on: lower the holdout "
            "(a share such as 0.2, or a number of queries below the total)"
        )
    if count == 0:
        return list(qids), []
    held = set(np.random.default_rng(seed).choice(n, size=count, replace=False).tolist())
    return [q for i, q in enumerate(qids) if i not in held], [q for i, q in enumerate(qids) if i in held]


def choose_rerank(
    retriever: Any,
    model: str,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    settings: TrainingSettings,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RerankChoice:
    """Depth and weight of the reranker ``model`` chosen on judged ``queries`` that it was not trained on.

    For each depth of ``settings.depths`` (deepest first, so the shallower ones re-sort
    cached scores), :func:`~hybrid_retriever.evaluation.rerank.tune_rerank_weight` picks
    the weight, starting from weight 0 (the fused order) and keeping it unless another
    beats it by more than a standard error; its cross-validated held-out score is the
    depth's score. The best depth (the shallower on a tie) is accepted when its weight
    is above 0 and its score beats the fused order's on the same queries.
    """
    from hybrid_retriever.evaluation.cache import collect_runs
    from hybrid_retriever.evaluation.rerank import tune_rerank_weight
    from hybrid_retriever.rerank.stage import Reranker

    s = settings
    if not s.depths:
        raise InvalidInputError("no rerank depths to choose from")
    base = retriever.config
    stage = base.rerank.model_copy(update={"enabled": True, "model": model, "max_length": s.max_length,
                                           "order": "interpolation", "weight": 0.0, "depth": max(s.depths)})
    previous = retriever.reranker
    retriever.reranker = Reranker(stage)
    try:
        runs = collect_runs(retriever, queries, complete=True, cache_dir=cache_dir, progress=progress)
        rows: list[dict[str, Any]] = []
        for depth in sorted(set(s.depths), reverse=True):
            cfg = base.model_copy(update={"rerank": stage.model_copy(update={"depth": depth})})
            res = tune_rerank_weight(retriever, queries, qrels, runs, cfg, weights=s.weights, metric=s.metric,
                                     folds=s.folds, seed=s.seed, cache_dir=cache_dir, progress=progress)
            rows.append({"depth": depth, "weight": res.best_weight, "heldout_score": res.heldout_score,
                         "fused_score": res.default_heldout_score, "p_value": res.significance.get("p_value"),
                         "per_weight": res.per_weight})
    finally:
        retriever.reranker.close()
        retriever.reranker = previous
    rows.sort(key=lambda r: r["depth"])
    best = max(rows, key=lambda r: (round(r["heldout_score"], 12), -r["depth"]))
    gain = best["heldout_score"] - best["fused_score"]
    if best["weight"] <= 0.0:
        accepted, reason = False, (
            f"on the {len(queries)} held-out queries no weight of the reranker beat the fused order by more than a "
            f"standard error at any depth ({s.metric} fused {best['fused_score']:.4f}; best weight per depth: "
            + ", ".join(f"{r['depth']}: {max(r['per_weight'], key=lambda w: w['score'])['weight']:g} "
                        f"({max(w['score'] for w in r['per_weight']):.4f})" for r in rows) + ")")
    elif gain <= 0.0:
        accepted, reason = False, (
            f"on the {len(queries)} held-out queries the chosen setting (depth {best['depth']}, weight "
            f"{best['weight']:g}) scores {best['heldout_score']:.4f} cross-validated against {best['fused_score']:.4f} "
            f"for the fused order ({s.metric})")
    else:
        accepted, reason = True, (
            f"depth {best['depth']}, weight {best['weight']:g}: {s.metric} {best['heldout_score']:.4f} cross-validated "
            f"vs {best['fused_score']:.4f} fused on {len(queries)} held-out queries (+{gain:.4f})")
    return RerankChoice(metric=s.metric, n_queries=len(queries), depth=best["depth"], weight=best["weight"],
                        heldout_score=best["heldout_score"], fused_score=best["fused_score"], accepted=accepted,
                        reason=reason, per_depth=rows)
