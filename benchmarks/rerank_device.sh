#!/bin/bash
# On a GPU machine (`python -m benchmarks rerank device-pack` packed what it needs): train on SciFact train, GPU check, report.
set -eo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site benchmarks/.cache/dev/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/adapters HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 RERANK_WORK=/tmp/rw
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__, torch.cuda.get_device_name(0))"
python3 -m benchmarks rerank device-unpack
A="--datasets /tmp/datasets --dense-model /tmp/minilm --full"
python3 -m benchmarks rerank train $A --encode 2>&1 | grep -v "it/s\]\|s/it\]" | tail -40
python3 -m benchmarks rerank gpu-check $A 2>&1 | tail -5
python3 -m benchmarks rerank report $A --latency-queries ${LATENCY_QUERIES:-20} 2>&1 | grep -v "query/s\]\|s/query\]" | tail -30
cp benchmarks/results/rerank.json benchmarks/results/rerank.md /tmp/rw/training.json /tmp/rw/gpu.json "$OUT"/
