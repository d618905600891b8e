#!/bin/bash
# CUDA float16/bfloat16 against float32 for the trained SciFact reranker and a BERT-base-size cross-encoder
# (`python -m benchmarks rerank gpu-check`, benchmarks/questions/rerank_device.py): pairs per second and top-10
# agreement, into rerank_gpu.md/.json. <= 5 min on an H100.
#   here:  python -m benchmarks rerank report device-pack
#   there: bash benchmarks/rerank_device.sh      (carry benchmarks/.cache/rerank-dev; results in $OUT)
#   CPU smoke test of the same code: SMOKE=1 bash benchmarks/rerank_device.sh
set -euo pipefail
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEV=benchmarks/.cache/rerank-dev
if [ -n "${SMOKE:-}" ]; then
  timeout 280 "$PY" -m benchmarks rerank gpu-check --cpu-smoke --runs 1 --out "${OUT:-/tmp/rerank-gpu-smoke}"
  exit 0
fi
if [ -d "$DEV/whl" ]; then  # the library's dependencies the GPU image lacks (device-pack downloaded them)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$DEV"/whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD:$PWD/adapters${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))"
timeout 280 "$PY" -m benchmarks rerank gpu-check --out "${OUT:-benchmarks/results}"
