"""The ``branches`` section: one entry per retrieval branch (BM25, dense, multi-vector)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from hybrid_retriever.config.base import GRANTS_CODE, LOADS_MODEL, LOADS_NOTHING, _Strict
from hybrid_retriever.errors import ConfigError


#: The sentence-transformers model used when none is named.
DEFAULT_DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


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
