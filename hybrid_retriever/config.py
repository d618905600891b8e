"""One typed configuration object for the whole retriever.

The Python API, the CLI and the adapters all take a :class:`RetrieverConfig`; it
round-trips to YAML and JSON unchanged::

    >>> from hybrid_retriever.config import RetrieverConfig
    >>> cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": "./index"}})
    >>> RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from hybrid_retriever.config_security import MARKER, marked_fields
from hybrid_retriever.errors import ConfigError

#: The sentence-transformers model used when none is named.
DEFAULT_DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Schema markers read by hybrid_retriever.config_security: a field that loads a model, one that
# grants running a model's own code, and one whose name looks like either but loads nothing.
LOADS_MODEL = {MARKER: "model"}
GRANTS_CODE = {MARKER: "trust"}
LOADS_NOTHING = {MARKER: "inert"}


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a config file must not pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignment is validated too; its errors read like a config file's (ConfigError).
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None


# --------------------------------------------------------------------------- stores


class EdgeStoreConfig(_Strict):
    """Embedded Qdrant Edge shard on local disk (the default back-end)."""

    kind: Literal["edge"] = "edge"
    path: str = Field(default="./hybrid-index", description="Directory holding the shard.", json_schema_extra=LOADS_NOTHING)
    optimize_after_add: int = Field(
        default=1000,
        ge=0,
        description="Run Qdrant's optimizer after an add of at least this many documents "
        "(builds HNSW and sparse indexes; 0 = never automatically).",
    )


class QdrantStoreConfig(_Strict):
    """A Qdrant server, cluster or cloud reached through ``qdrant-client``.

    ``location=":memory:"`` (or ``path``) runs qdrant-client's in-process local mode,
    which speaks the same API and is meant for tests.
    """

    kind: Literal["qdrant"] = "qdrant"
    url: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    location: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    path: Optional[str] = Field(default=None, json_schema_extra=LOADS_NOTHING)
    # A secret: masked in repr/str and written as null to YAML/JSON (see _secret_out), so a saved
    # config carries no key; the environment variable supplies it again on reload.
    api_key: Optional[SecretStr] = Field(
        default=None,
        description="API key (Qdrant Cloud); never written out. None = read the variable named by api_key_env.",
    )
    api_key_env: Optional[str] = Field(
        default="QDRANT_API_KEY", description="Environment variable holding the API key when api_key is not given."
    )
    prefer_grpc: bool = False
    grpc_port: int = Field(default=6334, gt=0, lt=65536, description="Port of Qdrant's gRPC API (with prefer_grpc).")
    timeout: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one store operation may take, retries included (sub-second values are honoured).",
    )
    retries: int = Field(default=2, ge=0, description="Extra attempts of a read (search, get, count) that failed to connect or timed out.")
    retry_backoff_s: float = Field(
        default=0.1, ge=0, allow_inf_nan=False, description="Wait before the first retry of a read; doubled for each next one."
    )
    collection: str = "hybrid_retriever"
    # Distributed mode (a Qdrant cluster): how a new collection is split and copied, and how
    # many copies a write or read must reach. Applied when this library creates the collection.
    shard_number: Optional[int] = Field(default=None, gt=0, description="Shards of a new collection; None = Qdrant's default (one per node).")
    replication_factor: Optional[int] = Field(default=None, gt=0, description="Copies of each shard (cluster); None = Qdrant's default (1).")
    write_consistency_factor: Optional[int] = Field(
        default=None, gt=0, description="Replicas that must confirm a write; None = Qdrant's default (1)."
    )
    read_consistency: Optional[Union[Annotated[int, Field(gt=0)], Literal["all", "majority", "quorum"]]] = Field(
        default=None, description="Replicas a search or read must agree on: a number, 'all', 'majority' or 'quorum'; None = any one."
    )
    shard_key: Optional[str] = Field(
        default=None,
        description="Custom sharding: this retriever writes to and reads from the shard key given (created with the collection).",
    )
    write_ordering: Optional[Literal["weak", "medium", "strong"]] = Field(
        default=None,
        description="Order of writes across replicas: weak, medium (through the shard's leader when it is up) or strong "
        "(always the leader); None = Qdrant's default (weak).",
    )

    @model_validator(mode="after")
    def _one_target(self) -> "QdrantStoreConfig":
        given = [x for x in (self.url, self.location, self.path) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of url, location (':memory:') or path for a qdrant store")
        if self.url:
            _check_url(self.url)
        return self

    @field_serializer("api_key")
    def _secret_out(self, key: Optional[SecretStr], info: SerializationInfo) -> Optional[SecretStr]:
        # Python-mode dumps (config copies: with_weights, tuning) keep the key, still masked;
        # JSON-mode dumps (YAML/JSON files, results, manifests) never contain it.
        return None if info.mode == "json" else key

    def resolved_api_key(self) -> str | None:
        """The API key to send: ``api_key``, else the environment variable ``api_key_env`` (None = no key)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None


def _check_url(url: str) -> None:
    """A Qdrant URL must be ``http(s)://host[:port][/prefix]``; say how to fix anything else."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"url {url!r} is malformed ({exc}); write it as http://HOST:6333") from None
    if parts.scheme not in ("http", "https"):
        hint = f"http://{url}" if "://" not in url else "http://HOST:6333 or https://HOST:6333"
        raise ValueError(f"url {url!r} needs the scheme http:// or https://, e.g. {hint}")
    if not parts.hostname:
        raise ValueError(f"url {url!r} names no host; write it as {parts.scheme}://HOST:6333")


StoreConfig = Annotated[Union[EdgeStoreConfig, QdrantStoreConfig], Field(discriminator="kind")]


# ------------------------------------------------------------------------- branches


class _BranchBase(_Strict):
    name: Optional[str] = Field(default=None, description="Branch name; defaults to its kind.")
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False, description="Fusion weight (normalised over branches).")
    depth: int = Field(default=100, gt=0, description="Candidates this branch returns per query.")

    @property
    def branch_name(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class BM25BranchConfig(_BranchBase):
    """Qdrant's BM25: sparse vectors with the IDF modifier, Qdrant's own tokeniser.

    ``language: auto`` detects the corpus language at first ingest and takes Qdrant's
    analyzer for it (stemmer, stopwords, the multilingual tokenizer for Chinese,
    Japanese, Korean and Thai); the choice is recorded in the index (docs/languages.md).
    """

    kind: Literal["bm25"] = "bm25"
    k1: Optional[float] = Field(
        default=None,
        ge=0,
        description="Term-frequency saturation. None = 0.9 for a new index (chosen on the dev splits, "
        "docs/languages.md); an existing index keeps the k1 it was built with (recorded in it).",
    )
    b: float = Field(default=0.75, ge=0, le=1)
    avg_len: Optional[float] = Field(
        default=None,
        gt=0,
        description="Mean document length in tokens; None = measured from the corpus at first ingest.",
    )
    language: str = Field(
        default="auto",
        description="Analyzer language: 'auto' detects it from a sample once the documents hold enough text "
        "(a language-neutral analyzer until then; recorded in the index), "
        "or a name such as 'english', 'german', 'chinese' (docs/languages.md).",
    )
    tokenizer: Literal["auto", "word", "multilingual"] = Field(
        default="auto",
        description="'auto': Qdrant's multilingual tokenizer for Chinese, Japanese, Korean and Thai, else words.",
        json_schema_extra=LOADS_NOTHING,  # one of Qdrant's built-in tokenizers, never a file
    )
    language_per_document: Optional[bool] = Field(
        default=None,
        description="With language 'auto': analyse each document, and each query, in its own detected language "
        "(every language with 5% of the sample gets its analyzer and its own avg_len). None = when the corpus is "
        "detected as mixed-language; false = the majority language's analyzer for everything.",
    )
    stemmer: Optional[bool] = Field(default=None, description="None = the language's Snowball stemmer when Qdrant has one.")
    stopwords: Optional[bool] = Field(default=None, description="None = the language's stopword list when Qdrant has one.")
    lowercase: bool = True
    ascii_folding: bool = False
    min_token_len: Optional[int] = Field(default=None, ge=1)
    max_token_len: Optional[int] = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _known_language(self) -> "BM25BranchConfig":
        if self.language.lower() != "auto":
            from hybrid_retriever.languages import analyzer_for

            analyzer_for(self.language, self.stemmer, self.stopwords, self.tokenizer)  # ConfigError naming the fix
            if self.language_per_document:
                raise ConfigError(
                    f"bm25.language_per_document needs bm25.language 'auto' (the languages are detected), not "
                    f"{self.language!r}; set language: auto, or language_per_document: false"
                )
        return self


class DenseBranchConfig(_BranchBase):
    """A sentence-transformers bi-encoder; cosine similarity of normalised embeddings."""

    kind: Literal["dense"] = "dense"
    model: str = Field(default=DEFAULT_DENSE_MODEL, description="Hugging Face id or local path.", json_schema_extra=LOADS_MODEL)
    device: Optional[str] = Field(default=None, description="None = CUDA when present, else CPU.")
    batch_size: int = Field(default=32, gt=0)
    query_prompt_name: Optional[str] = Field(
        default=None, description="Prompt for queries; None = the model's 'query' prompt if it defines one."
    )
    document_prompt_name: Optional[str] = Field(
        default=None, description="Prompt for documents; None = the model's 'document'/'passage' prompt if any."
    )
    max_seq_length: Optional[int] = Field(default=None, gt=0)
    trust_remote_code: bool = Field(
        default=False, description="Let the model run its own Python code (only the caller can grant it).", json_schema_extra=GRANTS_CODE
    )
    languages: Optional[list[str]] = Field(
        default=None,
        description="Languages the model covers (ISO codes or names; ['multilingual'] = any); None = the model card's "
        "'language' entry when present. Adaptive fusion discounts the branch outside them.",
    )
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="What runs the transformer: `onnx` (ONNX Runtime, exported locally from the weights and cached; "
        "same vectors as torch, about 2x faster per query on CPU), `onnx-int8` (int8 weights: vectors differ slightly), "
        "`torch`; `auto` = onnx on CPU (torch when onnxruntime is missing), torch on CUDA.",
    )


class MuveraConfig(_Strict):
    """MUVERA fixed-dimensional encodings (mode ``muvera``): an FDE vector of
    ``repetitions · 2^k_sim · dim_proj`` numbers per document, searched with its own
    index; its ``candidates`` best are re-ranked by exact MaxSim."""

    k_sim: int = Field(default=4, ge=1, le=8, description="SimHash hyperplanes per repetition (2^k_sim buckets).")
    dim_proj: int = Field(default=16, ge=1, description="Dimensions each token is projected to.")
    repetitions: int = Field(default=20, ge=1, description="Independent partitions, concatenated.")
    seed: int = Field(default=42, description="Seed of the random partitions and projections.")
    candidates: int = Field(default=300, gt=0, description="FDE candidates re-ranked by exact MaxSim per query.")


class MultiVectorBranchConfig(_BranchBase):
    """Late interaction (ColBERT-style MaxSim) on Qdrant multivectors.

    ``model`` None uses the token embeddings of all-MiniLM-L6-v2 (format ``tokens``),
    sharing one forward pass with a dense branch on the same model. ``format``
    ``auto`` reads PyLate and Stanford ColBERT checkpoints. ``mode``: ``full`` (its own
    HNSW index on the multivector), ``rescorer`` (no index; MaxSim of the other
    branches' candidates, one Qdrant request with prefetches) or ``muvera`` (FDE
    candidates, exact MaxSim re-ranking). By default documents are pooled (factor 2)
    and MaxSim runs on Qdrant's int8 copy: on the four benchmark collections this
    matches float32 quality and cuts the rescorer's cost about threefold
    (benchmarks/results/multivector_rescorer.md); ``pool_factor: 1``,
    ``quantization: null`` stores and scores the encoder's vectors exactly.
    """

    kind: Literal["multivector"] = "multivector"
    model: Optional[str] = Field(
        default=None, description="Checkpoint folder or Hugging Face id; None = MiniLM tokens.", json_schema_extra=LOADS_MODEL
    )
    format: Literal["auto", "pylate", "stanford", "tokens"] = "auto"
    mode: Literal["full", "rescorer", "muvera"] = "rescorer"
    device: Optional[str] = Field(default=None, description="None = CUDA when present, else CPU.")
    batch_size: int = Field(default=32, gt=0)
    query_length: Optional[int] = Field(default=None, gt=1, description="None = the checkpoint's own.")
    document_length: Optional[int] = Field(default=None, gt=1, description="None = the checkpoint's own.")
    pool_factor: int = Field(default=2, ge=1, le=8, description="Token pooling at index time (1 = none; 2 halves the vectors).")
    protected_tokens: int = Field(default=1, ge=0, description="Leading tokens never pooled ([CLS]).")
    storage: Literal["float32", "float16"] = "float32"
    quantization: Optional[Literal["int8"]] = Field(default="int8", description="Qdrant scalar quantization; None = originals only.")
    quantization_rescore: bool = Field(
        default=False, description="Quantized search: re-score with the original vectors (slower); False = MaxSim on int8."
    )
    oversampling: float = Field(default=2.0, ge=1.0, description="Quantized search: candidates × this are rescored.")
    hnsw_m: int = Field(default=16, gt=0, description="HNSW links per node (mode full).")
    hnsw_ef_construct: int = Field(default=100, gt=0, description="HNSW build beam (mode full).")
    share_backbone: bool = Field(default=True, description="One forward pass for this and a dense branch on the same model.")
    muvera: MuveraConfig = Field(default_factory=MuveraConfig)
    trust_remote_code: bool = Field(
        default=False, description="Let the model run its own Python code (only the caller can grant it).", json_schema_extra=GRANTS_CODE
    )

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_DENSE_MODEL

    @property
    def resolved_format(self) -> str:
        return "tokens" if self.model is None and self.format == "auto" else self.format

    @model_validator(mode="after")
    def _default_model_format(self) -> "MultiVectorBranchConfig":
        if self.model is None and self.format in ("pylate", "stanford"):
            raise ValueError(f"format {self.format!r} needs a model (a ColBERT checkpoint folder or Hugging Face id)")
        return self


BranchConfig = Annotated[
    Union[BM25BranchConfig, DenseBranchConfig, MultiVectorBranchConfig], Field(discriminator="kind")
]


# --------------------------------------------------------------------------- fusion

FusionMethod = Literal["interpolation", "rrf", "adaptive"]
Normalization = Literal["minmax", "zscore", "dbsf", "rank"]
MissingPolicy = Literal["exact", "floor"]
CompletedNormalization = Literal["clamp", "union", "raw"]


class FusionConfig(_Strict):
    """How branch lists become one ranking.

    ``interpolation`` sums ``weight_b * norm_b(score)``; ``rrf`` sums
    ``weight_b / (rrf_k + rank_b)`` with 1-based ranks (the paper's k is 60; Qdrant's
    server-side default is 2 with 0-based ranks). ``missing`` decides what a candidate
    gets in a branch that did not return it: its ``exact`` score fetched from Qdrant, or
    a ``floor`` (``floor_value``, or the branch's lowest normalised score when None).
    ``adaptive`` (the default) is interpolation with per-query weights: a branch that is
    blind for the query (BM25 with no query tokens: weight 0; a model whose languages
    exclude the corpus language: weight × ``foreign_weight`` × exp(−``fragmentation_weight`` ×
    the query's fragmentation under that model's tokenizer)) counts less, and the weights
    used are in each hit's provenance (docs/languages.md). Two query-performance signals are
    measured and reported too, each branch's support by the other branch and its query
    clarity; ``support_weight`` and ``clarity_weight`` let them move the weights (0 by
    default: chosen on dev data they did not carry over to test data).
    """

    method: FusionMethod = "adaptive"
    normalization: Normalization = "dbsf"
    rrf_k: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    missing: MissingPolicy = "exact"
    completed: CompletedNormalization = Field(
        default="union",
        description="missing exact: how a completed score is normalised — 'union' (normaliser fitted on returned and "
        "completed scores), 'clamp' (the branch's normaliser, never below its lowest returned score) or 'raw' "
        "(unbounded below; lets a blind branch bury the other's finds). See docs/languages.md.",
    )
    floor_value: Optional[float] = Field(default=None, allow_inf_nan=False)
    foreign_weight: float = Field(
        default=0.7,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="adaptive: weight multiplier of a branch whose model's languages exclude the content language "
        "(the corpus language, or in a mixed-language corpus the query's own).",
    )
    clarity_weight: float = Field(
        default=0.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a branch's query clarity (NQC of its top 10 scores, in [0, 1]) moves its "
        "weight: factor exp(clarity_weight * (clarity - offset)); 0 (the default) turns the signal off.",
    )
    sparse_clarity_offset: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        allow_inf_nan=False,
        description="adaptive: clarity subtracted from a sparse (BM25) branch's before weighting (BM25 lists are more "
        "spread than cosine lists).",
    )
    support_weight: float = Field(
        default=0.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a branch's support (the share of its top 10 that another branch also "
        "returned, in [0, 1]) moves its weight: factor exp(support_weight * support); 0 (the default) turns the signal off.",
    )
    fragmentation_weight: float = Field(
        default=3.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description="adaptive: how strongly a query's fragmentation under an out-of-language branch's tokenizer (the share of "
        "word pieces that continue a word or are unknown, in [0, 1]) lowers that branch's weight further: factor "
        "foreign_weight * exp(-fragmentation_weight * fragmentation); 0 turns the signal off (then foreign_weight alone "
        "applies, 0.3 being the setting before fragmentation was measured).",
    )
    server_side: bool = Field(
        default=False,
        description="Fuse inside Qdrant in one request (rrf, or dbsf interpolation); no per-branch provenance scores.",
    )

    @property
    def completes_scores(self) -> bool:
        """Whether fusion uses exact scores of candidates a branch did not return (score completion)."""
        return self.method != "rrf" and self.missing == "exact"

    @model_validator(mode="after")
    def _server_side_supported(self) -> "FusionConfig":
        if self.server_side and not (
            self.method == "rrf" or (self.method == "interpolation" and self.normalization == "dbsf")
        ):
            raise ValueError(
                "server_side fusion supports method 'rrf' or method 'interpolation' with normalization 'dbsf'"
            )
        return self


# --------------------------------------------------------------------------- runtime


class RuntimeConfig(_Strict):
    """Execution settings that do not change results."""

    k: int = Field(default=10, gt=0, description="Results returned per query.")
    max_workers: int = Field(default=4, gt=0, description="Threads encoding branches concurrently.")
    ingest_batch_size: int = Field(default=256, gt=0, description="Documents encoded and upserted per batch.")
    show_progress: bool = True
    # Resilience (hybrid_retriever/resilience.py): a failing or slow branch is left out of one call.
    branch_timeout_s: Optional[float] = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a branch may take to encode and search a call's queries; a slower branch is left out of "
        "that call. None = no limit (the fastest path: one batched Qdrant request).",
    )
    deadline_s: Optional[float] = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one search call may take: branches not done by then are left out, and score completion "
        "is skipped. None = no limit.",
    )
    on_branch_error: Literal["degrade", "raise"] = Field(
        default="degrade",
        description="A branch that fails or times out: `degrade` leaves it out of that call (weights renormalised, "
        "provenance and a warning say why); `raise` fails the call. Every branch failing always raises.",
    )
    threads: Optional[int] = Field(
        default=1,
        gt=0,
        description="Intra-op threads per encoder call (torch and ONNX Runtime, process-wide); 1 keeps query latency "
        "flat on busy cores (benchmarks/results/encoders.md); None = the libraries' own default (one per core).",
    )


# ------------------------------------------------------------ pseudo-relevance feedback

PRFPlacement = Literal["none", "before", "after", "both"]


class PRFGuardConfig(_Strict):
    """Drift guard: skip or damp feedback where it is likely to hurt.

    ``agreement`` is the overlap of the branches' first-stage top ``agreement_k``
    (mean over branch pairs, 0..1). At or above ``max_agreement`` the first stage is
    settled (the branches already agree) and feedback is skipped: measured on dev data
    it then mostly drifts (see docs/prf.md). Below ``min_agreement`` (unreliable first
    stage) feedback is skipped; from there up to ``full_agreement`` it is damped
    linearly. With ``consensus_depth``, a feedback document is used only if every
    other branch also ranks it within that depth (confirmed feedback); fewer than
    ``min_feedback`` usable documents skips feedback. The agreement rules need two or
    more branches; with one branch only ``consensus_depth``/``min_feedback`` apply.
    """

    enabled: bool = True
    agreement_k: int = Field(default=10, gt=0)
    max_agreement: Optional[float] = Field(
        default=0.5, ge=0, le=1, description="Skip feedback when branch agreement is at or above this (None = never)."
    )
    min_agreement: float = Field(default=0.0, ge=0, le=1)
    full_agreement: float = Field(default=0.0, ge=0, le=1)
    consensus_depth: Optional[int] = Field(default=None, gt=0)
    min_feedback: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "PRFGuardConfig":
        if self.full_agreement and self.full_agreement < self.min_agreement:
            raise ValueError("guard full_agreement must be >= min_agreement (or 0 for a hard cut at min_agreement)")
        if self.max_agreement is not None and self.max_agreement <= self.min_agreement:
            raise ValueError("guard max_agreement must be > min_agreement, or None")
        return self


class PRFConfig(_Strict):
    """Pseudo-relevance feedback: rewrite each query from its top documents and search again.

    ``interpolate`` places fusion around PRF (Li et al., "To Interpolate or not to
    Interpolate: PRF, Dense and Sparse Retrievers", SIGIR 2022): ``none`` — each PRF
    branch takes feedback from its own list and its second-stage list is the result;
    ``before`` — feedback from the fused first-stage list, the PRF branches'
    second-stage lists are the result; ``after`` — feedback from each branch's own
    list, then every branch is fused again (second stage for PRF branches, first stage
    for the others); ``both`` — feedback from the fused list and fused again.
    ``branches`` names the branches that get PRF (None = every dense branch). Dense
    branches use ``dense_method`` (Rocchio ``alpha``·q + ``beta``·mean(feedback) −
    ``gamma``·mean(negatives), Average, or ``qdrant_feedback``: Qdrant's own
    relevance-feedback query scores the second stage from the top ``fb_docs`` (plus
    ``fb_negatives``) documents and their first-stage scores, with weights
    ``feedback_a``/``feedback_b``/``feedback_c``); sparse branches use ``sparse_method``
    (RM3 with ``rm3_lambda`` the original query's weight, or Rocchio with alpha/beta),
    keeping ``fb_terms`` expansion terms.
    """

    enabled: bool = False
    interpolate: PRFPlacement = "both"
    branches: Optional[list[str]] = Field(default=None, description="Branches that get PRF; None = every dense branch.")
    fb_docs: int = Field(default=3, gt=0, description="Feedback documents (top of the feedback list).")
    depth: Optional[int] = Field(default=None, gt=0, description="Second-stage depth per branch; None = the branch's depth.")
    dense_method: Literal["rocchio", "average", "qdrant_feedback"] = Field(
        default="rocchio",
        description="Dense branches: rewrite the query by `rocchio` or `average`, or let Qdrant's relevance-feedback "
        "query score the second stage (`qdrant_feedback`).",
    )
    alpha: float = Field(default=1.0, ge=0, le=1, description="Rocchio weight of the original query.")
    beta: float = Field(default=0.5, ge=0, le=1, description="Rocchio weight of the feedback centroid.")
    gamma: float = Field(default=0.0, ge=0, le=1, description="Rocchio weight of the negative centroid.")
    fb_negatives: int = Field(
        default=0, ge=0, description="Negative documents (Rocchio gamma, qdrant_feedback), taken after rank negative_from."
    )
    negative_from: int = Field(default=50, ge=0)
    sparse_method: Literal["rm3", "rocchio"] = "rm3"
    rm3_lambda: float = Field(default=0.7, ge=0, le=1, description="RM3: weight of the original query (λ).")
    fb_terms: int = Field(default=30, gt=0, description="Expansion terms kept (sparse branches).")
    idf_terms: bool = Field(default=False, description="Choose expansion terms by P(w|R)·IDF (IDF read from Qdrant).")
    doc_weighting: Literal["score", "uniform"] = Field(
        default="score", description="Feedback documents weighted by first-stage score, or equally (RM3, sparse Rocchio)."
    )
    # Qdrant's naive strategy: a·sim(q, x) + Σ_pairs (s_pos − s_neg)^b · c · (sim(pos, x) − sim(neg, x)).
    # Defaults chosen on dev data (benchmarks/results/prf_feedback_tuning.md; best there with fb_docs 5, fb_negatives 1).
    feedback_a: float = Field(
        default=1.0, ge=0, allow_inf_nan=False, description="qdrant_feedback: weight a of the similarity to the query."
    )
    feedback_b: float = Field(
        default=1.0, ge=0, allow_inf_nan=False,
        description="qdrant_feedback: exponent b on a feedback pair's first-stage score gap (0 = every pair weighs c).",
    )
    feedback_c: float = Field(
        default=0.1, ge=0, allow_inf_nan=False,
        description="qdrant_feedback: weight c of each feedback pair's similarity difference.",
    )
    guard: PRFGuardConfig = Field(default_factory=PRFGuardConfig)

    @model_validator(mode="after")
    def _usable(self) -> "PRFConfig":
        if self.alpha + self.beta <= 0:
            raise ValueError("PRF alpha and beta are both 0: give the query or the feedback some weight")
        if self.gamma > 0 and self.fb_negatives == 0:
            raise ValueError("PRF gamma > 0 needs fb_negatives > 0 (the negative documents to subtract)")
        if self.dense_method == "qdrant_feedback":
            if self.fb_docs + self.fb_negatives < 2:
                raise ValueError(
                    "PRF dense_method qdrant_feedback pairs higher- with lower-scored feedback documents and needs "
                    "at least 2: set fb_docs >= 2 (or fb_negatives >= 1)"
                )
            if self.feedback_a + self.feedback_c <= 0:
                raise ValueError("PRF feedback_a and feedback_c are both 0: every score would be 0; give one of them weight")
        return self


# -------------------------------------------------------------------------- rerank

RerankOrder = Literal["reranker", "interpolation"]


class RerankConfig(_Strict):
    """Rescore the fused top ``depth`` with a cross-encoder (through the ``rerankers`` library).

    ``model`` is a Hugging Face id or a local folder (e.g. one written by
    ``hybrid-retriever train-reranker``); ``model_type`` None loads it as a cross-encoder
    (a sequence-classification model scoring query-document pairs), any other value
    (``flashrank``, ``t5``, ``colbert``, ...) goes to ``rerankers.Reranker``. A ready
    ``rerankers`` ranker object can be passed to ``HybridRetriever(reranker=...)`` instead.
    ``order``: ``reranker`` sorts by the reranker's score; ``interpolation`` by
    ``weight · norm(reranker) + (1 − weight) · norm(fused)``, both min-max normalised over
    the query's reranked candidates. If the reranker fails or runs past ``timeout`` the
    hits keep the fused order and their provenance says why (``on_error: raise`` raises instead).
    ``backend`` runs a cross-encoder on torch or on ONNX Runtime (exported once and cached,
    as the dense branch's). With ``adaptive_agreement`` a query whose branches agree (the
    mean share of each branch's top 10 another branch returned) is reranked only to
    ``adaptive_depth``: its fused top is already clear.
    """

    enabled: bool = False
    model: Optional[str] = Field(default=None, description="Cross-encoder: Hugging Face id or local folder.", json_schema_extra=LOADS_MODEL)
    model_type: Optional[str] = Field(
        default=None,
        description="None = cross-encoder; else a rerankers model type (flashrank, t5, colbert, ...).",
        json_schema_extra=LOADS_NOTHING,  # a backend's name; the model it loads is `model`
    )
    depth: int = Field(default=50, gt=0, description="Fused candidates rescored per query (separate from k).")
    batch_size: int = Field(default=32, gt=0, description="Query-document pairs per forward pass.")
    max_length: int = Field(default=512, gt=8, description="Tokens per query-document pair (longer pairs are truncated).")
    device: str = Field(default="auto", description="auto = CUDA when present, else CPU; or cpu, cuda, cuda:1, mps.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto = bfloat16 (or float16) on CUDA, float32 on CPU."
    )
    order: RerankOrder = Field(
        default="reranker", description="Final order: the reranker score, or its interpolation with the fused score."
    )
    weight: float = Field(
        default=1.0, ge=0, le=1, allow_inf_nan=False,
        description="order interpolation: weight of the normalised reranker score (1 = reranker only).",
    )
    timeout: Optional[float] = Field(default=None, gt=0, description="Seconds the reranker may take per call; None = no limit.")
    on_error: Literal["fused", "raise"] = Field(default="fused", description="Reranker failure: keep the fused order, or raise.")
    trust_remote_code: bool = Field(
        default=False, description="Let the model run its own Python code (only the caller can grant it).", json_schema_extra=GRANTS_CODE
    )
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch", description="Cross-encoder runtime: torch, or ONNX Runtime on CPU: onnx (torch's scores), onnx-int8 (int8 weights: faster, scores move)."
    )
    adaptive_agreement: Optional[float] = Field(
        default=None, ge=0, le=1, allow_inf_nan=False,
        description="Queries whose branches agree at least this much are reranked only to adaptive_depth; None = always depth.",
    )
    adaptive_depth: int = Field(default=0, ge=0, description="Candidates reranked for a query adaptive_agreement finds clear (0 = fused order).")

    @model_validator(mode="after")
    def _model_given(self) -> "RerankConfig":
        if self.enabled and not self.model:
            raise ValueError("rerank.enabled needs rerank.model (a cross-encoder's Hugging Face id or folder)")
        if self.adaptive_depth > self.depth:
            raise ValueError(f"rerank.adaptive_depth ({self.adaptive_depth}) is deeper than rerank.depth ({self.depth}); "
                             "it is the smaller depth for clear queries")
        return self


# ---------------------------------------------------------------------------- root


class RetrieverConfig(_Strict):
    """Everything a :class:`~hybrid_retriever.retriever.HybridRetriever` needs."""

    store: StoreConfig = Field(default_factory=EdgeStoreConfig)
    branches: list[BranchConfig] = Field(
        default_factory=lambda: [BM25BranchConfig(weight=0.5), DenseBranchConfig(weight=0.5)]
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    prf: PRFConfig = Field(default_factory=PRFConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)

    @field_validator("branches")
    @classmethod
    def _valid_branches(cls, branches: list[Any]) -> list[Any]:
        if not branches:
            raise ValueError("at least one branch is needed (bm25, dense)")
        names = [b.branch_name for b in branches]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"branch names must be unique; repeated: {dupes} (set 'name' on each)")
        total = sum(b.weight for b in branches)
        if total <= 0:
            raise ValueError("branch weights are all zero; give at least one branch a positive weight")
        if not math.isfinite(total):  # each is finite, but e.g. 1e308 + 1e308 overflows and every score would be 0
            raise ValueError("branch weights sum to more than the largest float; scale them down (only their ratios matter)")
        return branches

    @model_validator(mode="after")
    def _valid_prf(self) -> "RetrieverConfig":
        if not self.prf.enabled:
            return self
        unknown = set(self.prf.branches or []) - set(self.branch_names)
        if unknown:
            raise ValueError(f"prf.branches names unknown branch(es) {sorted(unknown)}; branches: {self.branch_names}")
        if self.prf.branches is not None and not self.prf.branches:
            raise ValueError("prf.branches is empty: name the branches that get feedback, or leave it unset")
        if self.fusion.server_side:
            raise ValueError("PRF needs per-branch scores: set fusion.server_side to false, or prf.enabled to false")
        return self

    # -- access helpers -------------------------------------------------------------

    def branch(self, name: str) -> Any:
        """The config of the branch called ``name``."""
        for b in self.branches:
            if b.branch_name == name:
                return b
        raise ConfigError(f"unknown branch {name!r}; this configuration has {self.branch_names}")

    @property
    def branch_names(self) -> list[str]:
        return [b.branch_name for b in self.branches]

    def weights(self) -> dict[str, float]:
        """Branch weights normalised to sum to one."""
        total = sum(b.weight for b in self.branches)
        return {b.branch_name: b.weight / total for b in self.branches}

    def with_weights(self, weights: dict[str, float]) -> "RetrieverConfig":
        """A copy with the given branch weights (unknown names are an error)."""
        unknown = set(weights) - set(self.branch_names)
        if unknown:
            raise ConfigError(f"unknown branch(es) {sorted(unknown)}; known: {self.branch_names}")
        data = self.model_dump()
        for b in data["branches"]:
            name = b["name"] or b["kind"]
            if name in weights:
                b["weight"] = weights[name]
        return RetrieverConfig.validate_data(data)

    # -- (de)serialisation ----------------------------------------------------------

    @classmethod
    def validate_data(cls, data: dict[str, Any]) -> "RetrieverConfig":
        """Validate a plain dict, turning pydantic's errors into one :class:`ConfigError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Parse JSON text; ``trust_remote_code: true`` in it must be granted by the caller (see ``from_file``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"configuration is not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError("configuration is nested too deeply to be a configuration") from None
        return _granted(cls.validate_data(data), trust_remote_code, "the configuration")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Parse YAML text; ``trust_remote_code: true`` in it must be granted by the caller (see ``from_file``)."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration is not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError("configuration is nested too deeply to be a configuration") from None
        if not isinstance(data, dict):
            raise ConfigError("configuration must be a mapping at its top level")
        return _granted(cls.validate_data(data), trust_remote_code, "the configuration")

    @classmethod
    def from_file(cls, path: str | Path, trust_remote_code: bool | None = None) -> "RetrieverConfig":
        """Read a ``.yaml``/``.yml`` or ``.json`` configuration file.

        A file is data: a branch with ``trust_remote_code: true`` in it is refused unless
        the caller grants it here (``trust_remote_code=True``) or for the process
        (:mod:`hybrid_retriever.models.trust`).
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file {p} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {p}: {exc}") from None
        try:
            return cls.from_json(text, trust_remote_code) if p.suffix.lower() == ".json" else cls.from_yaml(text, trust_remote_code)
        except ConfigError as exc:
            raise type(exc)(f"{p}: {exc}") from None

    def save(self, path: str | Path, header: str | None = None) -> None:
        """Write to ``.json`` or YAML (any other suffix); ``header`` becomes a YAML comment block."""
        p = Path(path)
        if p.suffix.lower() == ".json":
            p.write_text(self.to_json() + "\n", encoding="utf-8")
            return
        comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
        p.write_text(comment + self.to_yaml(), encoding="utf-8")


def _granted(config: RetrieverConfig, trust_remote_code: bool | None, source: str) -> RetrieverConfig:
    """``config`` read from ``source``, unless it turns on trust_remote_code that the caller did not grant.

    Every grant field in every section counts (found through the schema's markers, see
    :mod:`hybrid_retriever.config_security`), so a section added later is covered too.
    """
    from hybrid_retriever.errors import RemoteCodeError
    from hybrid_retriever.models.trust import how_to_grant, remote_code_allowed

    data = config.model_dump(mode="json")
    asking = [f.dotted() for f in marked_fields(RetrieverConfig, data) if f.kind == "trust" and f.value is True]
    if asking and not remote_code_allowed(trust_remote_code):
        raise RemoteCodeError(
            f"{source} sets trust_remote_code: true at {asking}, which would run code shipped with the "
            "model; a configuration file cannot grant that. Remove it, or, "
            + how_to_grant("RetrieverConfig.from_file(path)")
        )
    return config


def _explain(exc: ValidationError) -> str:
    """One readable line per problem, each naming the offending key."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{where}': remove it or check its spelling")
        elif err["type"] == "union_tag_invalid":
            lines.append(f"'{where}': {err['msg']}")
        else:
            lines.append(f"'{where}': {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
