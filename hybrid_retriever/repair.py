"""Rebuild the manifest of an Edge index whose ``manifest.json`` is missing or corrupt.

The documents live in the shard; the manifest only records what built them. So it can be
rebuilt from the stored points and the configuration the index was built with: branch
settings come from the configuration, checked against the shard (vector names and sizes)
and against the stored vectors themselves (a sample of stored texts is re-encoded and must
reproduce them); BM25's ``avg_len`` is recovered exactly from stored document vectors;
the metadata field list is read from the stored payloads. Nothing is deleted: a corrupt
manifest is kept beside the new one.

    >>> from hybrid_retriever import RetrieverConfig                  # doctest: +SKIP
    >>> from hybrid_retriever.repair import repair_index
    >>> print(repair_index("./my-index", RetrieverConfig.from_file("built-with.yaml")).summary())
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from hybrid_retriever.branches import BM25Branch, Branch, build_branch
from hybrid_retriever.branches.bm25 import PREVIOUS_DEFAULT_K1
from hybrid_retriever.config import RetrieverConfig
from hybrid_retriever.errors import IndexCorruptError, IndexMismatchError, IndexPathError
from hybrid_retriever.languages import SAMPLE_DOCS
from hybrid_retriever.stores.base import PAYLOAD_METADATA, PAYLOAD_TEXT, StoredPoint
from hybrid_retriever.stores.edge import MANIFEST_FILE, SHARD_DIR, EdgeStore, read_manifest_file
from hybrid_retriever.stores.manifest import DOCUMENTS_KEY, build_manifest, validate_manifest
from hybrid_retriever.types import SparseVector, Vector

log = logging.getLogger(__name__)

#: Stored documents re-encoded to check that the configuration reproduces their vectors.
CHECK_SAMPLE = 8

#: Least cosine similarity between a stored dense vector and its re-encoding (float16 storage included).
_MIN_COSINE = 0.99


@dataclass
class RepairReport:
    """What :func:`repair_index` found and did."""

    path: str
    #: "rebuilt" (a new manifest was written), "recounted" (store files lost documents: the
    #: manifest now records what is left), "set-aside" (a corrupt manifest of an index
    #: without documents was renamed, so the next build starts afresh) or "none".
    action: str
    reason: str
    documents: int = 0
    metadata_fields: list[str] = field(default_factory=list)
    #: Branch -> how its settings were confirmed (e.g. "8 stored documents re-encoded identically").
    checks: dict[str, str] = field(default_factory=dict)
    #: Where the corrupt manifest was moved (it is never deleted).
    set_aside: Optional[str] = None

    def summary(self) -> str:
        """A few lines for people."""
        if self.action == "none":
            return "\n".join([f"{self.path}: nothing to repair ({self.reason})."] + [f"  {n}: {how}" for n, how in self.checks.items()])
        if self.action == "recounted":
            return "\n".join([f"{self.path}: recounted: {self.reason}."] + [f"  {n}: {how}" for n, how in self.checks.items()])
        if self.action == "set-aside":
            return f"{self.path}: {self.reason}; the corrupt manifest was kept as {self.set_aside}."
        lines = [f"{self.path}: rebuilt {MANIFEST_FILE} ({self.reason}); {self.documents} documents kept."]
        lines += [f"  {name}: {how}" for name, how in self.checks.items()]
        lines.append(f"  metadata fields: {', '.join(self.metadata_fields) or '(none)'}")
        if self.set_aside:
            lines.append(f"  the corrupt manifest was kept as {self.set_aside}")
        return "\n".join(lines)


def repair_index(path: str | os.PathLike[str], config: RetrieverConfig | None = None, *, sample: int = CHECK_SAMPLE) -> RepairReport:
    """Rebuild the manifest of the Edge index at ``path`` from its stored points and ``config``.

    ``config`` is the configuration the index was built with (its store section is
    ignored); ``None`` means the defaults. Does nothing when the manifest is sound or the
    shard holds no documents. Raises :class:`IndexMismatchError` (writing nothing) when
    the configuration does not reproduce the stored vectors, and
    :class:`~hybrid_retriever.errors.IndexLockedError` when the index is open elsewhere.
    """
    root = Path(path).expanduser()
    manifest_file = root / MANIFEST_FILE
    if not (root / SHARD_DIR).is_dir():
        raise IndexPathError(f"no index data at {root / SHARD_DIR}: there is nothing to repair at {root}")
    cfg = config or RetrieverConfig()
    store = EdgeStore(root, check=False)  # holds the lock: nobody writes while the manifest is rebuilt
    try:
        reason = "it was missing"
        if manifest_file.is_file():
            try:
                manifest = read_manifest_file(manifest_file)
            except IndexCorruptError as exc:
                reason = f"it was corrupt: {exc}".split(". ")[0]
            else:
                return _check_shard(store, manifest, sample)
        count, fields, first, texts = _survey(store, sample)
        if not count:
            if not manifest_file.is_file():
                return RepairReport(str(root), "none", "the index holds no documents; index them again, the empty shard is replaced")
            # Nothing to rebuild a manifest for: set the corrupt one aside, and the next build starts afresh.
            aside = _set_aside(manifest_file)
            return RepairReport(str(root), "set-aside", "the index holds no documents; index them again", set_aside=aside)
        branches = [build_branch(c) for c in cfg.branches]
        by_name = {b.name: b for b in branches}
        for b in branches:
            b.attach(by_name)
        _check_vector_names(root, branches)
        sample_points = _with_vectors(store, first)
        checks = {b.name: _settle_and_check(b, sample_points, texts) for b in branches}
        recorded = {b.name: b.manifest() for b in branches}
        for b in branches:  # the configuration reproduced the stored vectors: record the model's probe again
            entry = b.identity_probe()
            if entry is not None:
                recorded[b.name]["probe"] = entry
        manifest = build_manifest(recorded, cfg.model_dump(mode="json", exclude={"store"}), metadata_fields=fields)
        validate_manifest(manifest, "(rebuilt)", "")
        set_aside = _set_aside(manifest_file) if manifest_file.is_file() else None
        store.write_manifest(manifest)
    finally:
        store.close()
    report = RepairReport(str(root), "rebuilt", reason, count, fields, checks, set_aside)
    log.info("%s", report.summary())
    return report


def _check_shard(store: EdgeStore, manifest: dict[str, Any], sample: int) -> RepairReport:
    """A sound manifest: check the shard against it (every payload readable, the count, each branch's vectors).

    Unreadable payloads cannot be repaired here (:class:`IndexCorruptError`, nothing
    changed). Fewer documents than the manifest records (lost store files) are recounted,
    so the index opens again with what it still holds, and the report says how many were lost.
    """
    root = store.path
    try:
        count, _, first, _ = _survey(store, sample)
        points = _with_vectors(store, first)
    except IndexCorruptError as exc:
        raise IndexCorruptError(
            f"the stored documents at {root} cannot all be read back ({str(exc).split('; run')[0]}); they cannot be "
            "recovered from this folder: re-index the source into a new folder, or restore it from a backup. "
            "Nothing was changed"
        ) from None
    checks = {"payloads": f"all {count} stored documents readable"}
    dense, _ = _shard_vectors(root)
    for name in sorted(dense):
        lacking = [p.point_id for p in points if name not in p.vectors]
        if lacking:
            raise IndexCorruptError(
                f"stored document {lacking[0]} at {root} has no {name!r} vector (checked {len(points)}); the store files "
                "are damaged: re-index the source into a new folder, or restore it from a backup. Nothing was changed"
            )
    checks["vectors"] = f"{len(points)} sampled documents hold every dense vector ({', '.join(sorted(dense)) or 'none'})"
    recorded = manifest.get(DOCUMENTS_KEY)
    if isinstance(recorded, list) and not recorded[0] <= count <= recorded[1]:
        store.write_manifest(manifest)  # the store records the count it holds now
        lost = recorded[0] - count
        what = f"{lost} documents were lost" if lost > 0 else f"{-lost} more documents than recorded are stored"
        return RepairReport(
            str(root), "recounted",
            f"{MANIFEST_FILE} records {recorded[0]} documents, the store files hold {count} readable ones: {what}; "
            "re-index the source to bring them back (index --skip-unchanged re-encodes only what is missing)",
            count, list(manifest.get("metadata_fields", [])), checks,
        )
    checks["count"] = f"{count} documents, as {MANIFEST_FILE} records" if isinstance(recorded, list) else f"{count} documents"
    return RepairReport(str(root), "none", f"{MANIFEST_FILE} is sound and the shard matches it", count, checks=checks)


def _shard_vectors(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shard's own dense and sparse vector settings by name, from its configuration file."""
    try:
        shard_cfg = json.loads((root / SHARD_DIR / "edge_config.json").read_text(encoding="utf-8"))
        return dict(shard_cfg.get("vectors") or {}), dict(shard_cfg.get("sparse_vectors") or {})
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise IndexCorruptError(f"cannot read the shard's own configuration {root / SHARD_DIR / 'edge_config.json'}: {exc}") from None


def _set_aside(manifest_file: Path) -> str:
    """Rename a corrupt manifest (never delete it); returns where it went."""
    aside = manifest_file.with_name(f"{MANIFEST_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(manifest_file, aside)
    return str(aside)


def _survey(store: EdgeStore, sample: int) -> tuple[int, list[str], list[StoredPoint], list[str]]:
    """Number of stored points, their metadata fields, the first ``sample`` points, and the texts of the
    first :data:`SAMPLE_DOCS` (what BM25 decides its language from); payloads streamed page by page."""
    count = 0
    fields: set[str] = set()
    first: list[StoredPoint] = []
    texts: list[str] = []
    offset: str | None = None
    while True:
        page, offset = store.scroll(1024, offset)
        count += len(page)
        fields.update(k for p in page for k in (p.payload.get(PAYLOAD_METADATA) or {}))
        first.extend(page[: max(sample - len(first), 0)])
        texts.extend(t for p in page[: max(SAMPLE_DOCS - len(texts), 0)] if isinstance(t := p.payload.get(PAYLOAD_TEXT), str))
        if offset is None:
            return count, sorted(fields), first, texts


def _with_vectors(store: EdgeStore, points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """``points`` again, with all their vectors, in the same order; each must carry a text."""
    missing = [p.point_id for p in points if not isinstance(p.payload.get(PAYLOAD_TEXT), str)]
    if missing:
        raise IndexCorruptError(
            f"stored point {missing[0]} has no '{PAYLOAD_TEXT}' text: this shard was not written by hybrid-retriever, "
            "so its manifest cannot be rebuilt from it"
        )
    full = {p.point_id: p for p in store.retrieve([p.point_id for p in points], with_vectors=True)}
    return [full[p.point_id] for p in points]


def _check_vector_names(root: Path, branches: Sequence[Branch]) -> None:
    """The configuration's vectors against those the shard was created with (names, kinds, sizes)."""
    dense, sparse = _shard_vectors(root)
    specs = [s for b in branches for s in b.vector_specs]
    problems = []
    want_dense = {s.name: s.size for s in specs if s.kind != "sparse"}
    want_sparse = {s.name for s in specs if s.kind == "sparse"}
    if set(want_dense) != set(dense) or want_sparse != set(sparse):
        problems.append(
            f"the index stores vectors {sorted(dense)} (dense) and {sorted(sparse)} (sparse), the configuration's branches "
            f"make {sorted(want_dense)} and {sorted(want_sparse)}"
        )
    for name in sorted(set(want_dense) & set(dense)):
        size = (dense[name] or {}).get("size") if isinstance(dense[name], dict) else None
        if size != want_dense[name]:
            problems.append(f"vector {name!r} has {size} dimensions in the index, {want_dense[name]} in the configuration")
    if problems:
        raise _mismatch(problems)


def _settle_and_check(branch: Branch, points: Sequence[StoredPoint], corpus: Sequence[str] = ()) -> str:
    """Recover what the branch learned at ingest, then check it reproduces the stored vectors.

    ``corpus``: stored texts (up to a detection sample) that BM25 with ``language: auto``
    decides its language from, as at ingest: a language, or still pending (the neutral analyzer).
    """
    texts = [p.payload[PAYLOAD_TEXT] for p in points]
    how = ""
    if isinstance(branch, BM25Branch) and branch.analyzer is None:
        branch.choose_analyzer(list(corpus) or texts)  # bm25.language auto: decided from the stored texts, as at ingest
        if branch.language_pending:
            how = "language not decided yet (too little text: the neutral analyzer, decided at a later ingest); "
    if isinstance(branch, BM25Branch) and branch.avg_len is None:
        stored = [p.vectors.get(branch.name) for p in points]
        if branch.config.k1 is None and not _reproduces_k1(branch, texts, stored):
            # k1 unset: the index may predate today's default and use the one of its time.
            branch.set_k1(PREVIOUS_DEFAULT_K1)
            how += f"k1 {PREVIOUS_DEFAULT_K1} (the default when the index was built); "
        if branch.per_language:
            # Each language's documents were written with that language's avg_len: recover them one by one.
            languages = branch.languages_of(texts)
            branch.set_avg_lens({
                lang: _recover_avg_len(branch, [t for t, x in zip(texts, languages) if x == lang],
                                       [v for v, x in zip(stored, languages) if x == lang])
                for lang in branch.languages if lang in languages
            })
            how += "avg_len per language " + ", ".join(f"{lang} {v:.4g}" for lang, v in branch.avg_lens.items())
            how += " recovered from stored vectors; "
        else:
            branch.restore({"avg_len": _recover_avg_len(branch, texts, stored)})
            how += f"avg_len {branch.avg_len:.4g} recovered from stored vectors; "
    fresh = branch.stored_vectors(branch.encode_documents(texts))
    for p, mine in zip(points, fresh):
        for name, vector in mine.items():
            if name not in p.vectors or not _same_vector(p.vectors[name], vector):
                raise _mismatch(
                    [
                        f"branch {branch.name!r}: re-encoding stored document {p.payload.get('doc_id', p.point_id)!r} gives "
                        f"another {name!r} vector than the stored one (another model, prompt or tokeniser setting; "
                        "with bm25.language auto, name the language the index was built with)"
                    ],
                )
    return how + f"{len(points)} stored documents re-encoded to their stored vectors"


def _reproduces_k1(branch: BM25Branch, texts: Sequence[str], stored: Sequence[Vector | None]) -> bool:
    """Whether the branch's k1 explains the stored weights: with the k1 they were written with, every
    term of every document gives the same avg_len estimate; with another one the estimates spread
    with term frequency and document length."""
    if branch.config.b == 0 or branch.k1 == 0:
        return True
    # Per-document languages each have their own avg_len: their estimates agree within a language.
    languages = branch.languages_of(texts)
    for lang in set(languages):
        estimates = _avg_len_estimates(branch, [t for t, x in zip(texts, languages) if x == lang],
                                       [v for v, x in zip(stored, languages) if x == lang])
        if len(estimates) > 1:
            low, mid, high = np.quantile(estimates, [0.1, 0.5, 0.9])
            if high - low > 1e-3 * mid:
                return False
    return True


def _avg_len_estimates(branch: BM25Branch, texts: Sequence[str], stored: Sequence[Vector | None]) -> list[float]:
    """One avg_len estimate per term of each stored document vector, solved from its weight
    ``w = tf·(k1+1) / (tf + k1·(1 − b + b·dl/avg_len))``."""
    k1, b = branch.k1, branch.config.b
    out = []
    for text, vector in zip(texts, stored):
        if not isinstance(vector, SparseVector):
            continue
        tf = branch.term_frequencies(text)
        dl = sum(tf.values())
        for i, w in zip(vector.indices, vector.values):
            t = tf.get(i)
            if not t or w <= 0:
                continue
            denominator = (t * (k1 + 1) / w - t) / k1 - 1 + b
            if denominator > 0:
                out.append(dl * b / denominator)
    return out


def _recover_avg_len(branch: BM25Branch, texts: Sequence[str], stored: Sequence[Vector | None]) -> float:
    """BM25's avg_len, the median of :func:`_avg_len_estimates`.

    The estimates agree when the configuration's k1, b and tokeniser are the ones the
    index was built with (checked afterwards by re-encoding). With ``b = 0`` or
    ``k1 = 0`` avg_len has no effect and is re-measured from the texts instead.
    """
    if branch.config.b == 0 or branch.k1 == 0:
        branch.fit(list(texts))
        return float(branch.avg_len or 1.0)
    estimates = _avg_len_estimates(branch, texts, stored)
    if not estimates:
        raise IndexCorruptError(f"no stored {branch.name!r} vector to recover BM25's avg_len from; set avg_len in the configuration")
    return float(statistics.median(estimates))


def _same_vector(stored: Any, fresh: Any) -> bool:
    if isinstance(stored, SparseVector) or isinstance(fresh, SparseVector):
        if not (isinstance(stored, SparseVector) and isinstance(fresh, SparseVector)):
            return False
        a, c = dict(zip(stored.indices, stored.values)), dict(zip(fresh.indices, fresh.values))
        return a.keys() == c.keys() and bool(np.allclose([a[i] for i in a], [c[i] for i in a], rtol=1e-3, atol=1e-6))
    a, c = np.asarray(stored, dtype=np.float64), np.asarray(fresh, dtype=np.float64)
    if a.shape != c.shape or a.size == 0:
        return a.shape == c.shape
    a, c = a.reshape(-1, a.shape[-1]), c.reshape(-1, c.shape[-1])
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1)
    zero = norms == 0
    cosine = np.where(zero, 1.0, (a * c).sum(axis=1) / np.where(zero, 1.0, norms))
    return bool(np.all(cosine >= _MIN_COSINE))


def _mismatch(problems: list[str]) -> IndexMismatchError:
    return IndexMismatchError(
        "the configuration does not match the stored documents, so the manifest was not rebuilt:\n  - "
        + "\n  - ".join(problems)
        + "\nGive the configuration the index was built with (--config FILE)."
    )
