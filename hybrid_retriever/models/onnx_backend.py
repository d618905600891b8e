"""A transformer exported to ONNX and run with ONNX Runtime, exported locally and cached on disk.

The dense branch's transformer (and with it the multi-vector branch's shared forward
pass), and a cross-encoder reranker (its classifier's ``logits`` as the output), can run
on ONNX Runtime instead of torch: on this project's CPUs a single query
encodes about twice as fast with identical vectors in float32
(benchmarks/results/encoders.md). Nothing is downloaded: the export is made here from
the weights already loaded (``torch.onnx.export``), optionally quantised to int8
(``onnxruntime.quantization.quantize_dynamic``), and kept in a cache folder::

    <cache>/onnx/<model slug>-<hash of the model name>/<variant>/
        model.onnx      the graph and weights (data only: loading it runs no code)
        export.json     hash of the source weights, of the model folder's files, of model.onnx; versions

Before a cached export is used, the weights now loaded are hashed and compared with
the hash recorded at export: if they differ (the model was updated), the export is
made again. If ``model.onnx`` no longer matches its recorded hash (edited, truncated,
replaced), it is refused with a :class:`~hybrid_retriever.errors.ModelCacheError`.
The hash of the model folder's files (:func:`~hybrid_retriever.models.identity.weights_sha256`)
recorded beside it lets a later process use the export without loading the weights in torch
(:mod:`hybrid_retriever.models.onnx_encoder`).
The cache folder is ``$HYBRID_RETRIEVER_CACHE`` or ``~/.cache/hybrid-retriever``
(``$XDG_CACHE_HOME`` respected).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from hybrid_retriever.errors import ConfigError, ModelCacheError

log = logging.getLogger(__name__)

#: float32 (same vectors as torch) or int8 dynamic quantisation of the weights.
Variant = Literal["fp32", "int8"]
#: Inputs a BERT-like transformer may take, in the order the export declares them.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Bumped when the export procedure changes, so older exports are made again.
EXPORT_VERSION = 2
OPSET = 17
_MODEL_FILE = "model.onnx"
_RECORD_FILE = "export.json"
_CHUNK = 1 << 20


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def missing_onnxruntime() -> ConfigError:
    """The error for backend ``onnx`` without ONNX Runtime installed."""
    return ConfigError(
        "the dense branch's backend 'onnx' needs ONNX Runtime, which is not installed: "
        "pip install onnxruntime onnx (both are dependencies of hybrid-retriever; this platform may lack a wheel), "
        "or set the branch's backend: torch"
    )


def default_cache_dir() -> Path:
    """``$HYBRID_RETRIEVER_CACHE``, else ``$XDG_CACHE_HOME/hybrid-retriever``, else ``~/.cache/hybrid-retriever``."""
    explicit = os.environ.get("HYBRID_RETRIEVER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hybrid-retriever"


def weights_fingerprint(model: Any) -> str:
    """SHA-256 of a torch module's configuration and every parameter and buffer (names, shapes, dtypes, bytes)."""
    import torch

    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def export_folder(cache_dir: Path, model_name: str, variant: Variant) -> Path:
    """Where the export of ``model_name`` in ``variant`` lives under ``cache_dir``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_name).name or model_name)[:60]
    key = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:12]
    return Path(cache_dir) / "onnx" / f"{slug}-{key}" / variant


def discard_export(model_name: str, variant: Variant, cache_dir: Path | None = None) -> None:
    """Delete the cached export of ``model_name`` in ``variant`` (it is derived data: the next use exports again)."""
    folder = export_folder(cache_dir or default_cache_dir(), model_name, variant)
    if folder.is_dir():
        log.warning("discarding the cached ONNX export %s: it is exported again from the model's weights", folder)
        shutil.rmtree(folder, ignore_errors=True)


#: What the export returns: an encoder's token embeddings, or a sequence classifier's logits (a cross-encoder).
Output = Literal["last_hidden_state", "logits"]


def _output_module(model: Any, names: tuple[str, ...], output: Output) -> Any:
    """``model`` (a Hugging Face model) as a module from plain tensors to one of its outputs, for export."""
    import torch

    class OneOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return getattr(self.model(**dict(zip(names, inputs)), return_dict=True), output)

    return OneOutput().eval()


def export(
    model: Any, input_names: tuple[str, ...], folder: Path, variant: Variant, fingerprint: str, files_sha256: str | None = None,
    output: Output = "last_hidden_state",
) -> None:
    """Export ``model`` (a Hugging Face encoder) to ``folder/model.onnx`` with its record; atomic."""
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        fp32 = tmp / ("model.fp32.onnx" if variant == "int8" else _MODEL_FILE)
        sample = {n: torch.ones((2, 8), dtype=torch.long) for n in input_names}
        if "token_type_ids" in sample:
            sample["token_type_ids"] = torch.zeros((2, 8), dtype=torch.long)
        sample["attention_mask"][1, 5:] = 0  # a padded row, so the traced graph handles padding
        axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in input_names}
        axes[output] = {0: "batch", 1: "sequence"} if output == "last_hidden_state" else {0: "batch"}
        was_training = model.training
        model.eval()
        try:
            # The tracer's warnings (deprecation, "trace might not generalise" for shape checks) are about
            # branches this encoder never takes: inputs always carry an attention mask.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _output_module(model, input_names, output),
                    tuple(sample[n] for n in input_names),
                    str(fp32),
                    input_names=list(input_names),
                    output_names=[output],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
        finally:
            model.train(was_training)
        if variant == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel weight scales: cosine to float32 ~0.99 on MiniLM (per-tensor: 0.91-0.97).
            # The quantizer logs chatter on the root logger; it is silenced for this one call.
            logging.disable(logging.WARNING)
            try:
                quantize_dynamic(str(fp32), str(tmp / _MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                logging.disable(logging.NOTSET)
            fp32.unlink()
        record = {
            "export_version": EXPORT_VERSION,
            "variant": variant,
            "inputs": list(input_names),
            "output": output,
            "source_sha256": fingerprint,
            # The model folder's files (models/identity.py): lets a later process trust the export without torch.
            "source_files_sha256": files_sha256,
            "model_sha256": file_sha256(tmp / _MODEL_FILE),
            "torch": torch.__version__,
            "opset": OPSET,
        }
        (tmp / _RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if _is_current(read_record(folder), fingerprint, input_names, output):
            # Another process (a second test worker, a second server) finished the same export while this
            # one ran: keep theirs, which a reader may be loading right now, rather than delete it.
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            # Another process finished the same export first: keep theirs if it is of these weights.
            theirs = read_record(folder)
            if theirs is None or theirs.get("source_sha256") != fingerprint:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_record(folder: Path) -> dict[str, Any] | None:
    """The export record (``export.json``) in ``folder``, or None when it or ``model.onnx`` is missing or unreadable."""
    path = folder / _RECORD_FILE
    if not path.is_file() or not (folder / _MODEL_FILE).is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _is_current(record: dict[str, Any] | None, fingerprint: str, input_names: tuple[str, ...], output: Output) -> bool:
    """Whether ``record`` is of an export of these weights, by this procedure, with these inputs and output."""
    return (
        record is not None
        and record.get("source_sha256") == fingerprint
        and record.get("export_version") == EXPORT_VERSION
        and tuple(record.get("inputs", ())) == input_names
        and record.get("output", "last_hidden_state") == output
    )


def cached_export(
    model: Any,
    model_name: str,
    input_names: tuple[str, ...],
    variant: Variant = "fp32",
    cache_dir: Path | None = None,
    source_folder: Path | None = None,
    output: Output = "last_hidden_state",
) -> Path:
    """The verified ``model.onnx`` of ``model``'s current weights, exported first if missing or stale.

    ``source_folder`` is the folder ``model`` was loaded from: the record then carries the
    hash of its files, which is how :mod:`hybrid_retriever.models.onnx_encoder` later
    trusts the export without loading torch. Raises :class:`ModelCacheError` when the
    cached file does not match the hash recorded at export.
    """
    folder = export_folder(cache_dir or default_cache_dir(), model_name, variant)
    fingerprint = weights_fingerprint(model)
    record = read_record(folder)
    if not _is_current(record, fingerprint, input_names, output):
        why = "no export yet" if record is None else "the weights or export procedure changed"
        log.info("exporting %s to ONNX (%s, %s) in %s", model_name, variant, why, folder)
        export(model, input_names, folder, variant, fingerprint, _files_sha256(source_folder), output)
        return folder / _MODEL_FILE
    actual = file_sha256(folder / _MODEL_FILE)
    if actual != record.get("model_sha256"):
        raise ModelCacheError(
            f"the cached ONNX export {folder / _MODEL_FILE} does not match the hash recorded when it was made "
            f"(recorded {str(record.get('model_sha256'))[:16]}…, found {actual[:16]}…): it was changed after export "
            f"and is not used. Delete the folder {folder} and it is exported again from the model's weights"
        )
    files = _files_sha256(source_folder)
    if files is not None and record.get("source_files_sha256") != files:
        # An export made before files were recorded, or the same weights with other side files: the
        # weights fingerprint above vouches for the export, so the record learns the folder's hash.
        _write_record(folder, {**record, "source_files_sha256": files})
    return folder / _MODEL_FILE


def _files_sha256(source_folder: Path | None) -> str | None:
    if source_folder is None or not Path(source_folder).is_dir():
        return None
    from hybrid_retriever.models.identity import weights_sha256

    return weights_sha256(source_folder)


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    """Replace ``folder``'s export record atomically (a reader sees the old or the new one)."""
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, folder / _RECORD_FILE)
    except OSError as exc:  # a read-only cache still works, only without the torch-free path
        log.debug("cannot update %s: %s", folder / _RECORD_FILE, exc)
        Path(tmp).unlink(missing_ok=True)


class OnnxTransformer:
    """An ONNX Runtime session returning a transformer's last hidden states (token embeddings)."""

    def __init__(self, path: Path, input_names: tuple[str, ...], threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_onnxruntime() from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads steal cores from other work on a busy machine; wait instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self.threads = threads

    def __call__(self, features: Mapping[str, Any]) -> np.ndarray:
        """Last hidden states (batch × sequence × hidden, float32) for tokenised ``features``."""
        feeds = {n: _as_int64(features[n]) for n in self.input_names}
        return self.session.run(None, feeds)[0]


def _as_int64(x: Any) -> np.ndarray:
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return a.astype(np.int64, copy=False)


def load_onnx_transformer(
    model: Any,
    model_name: str,
    input_names: tuple[str, ...],
    variant: Variant,
    threads: int,
    cache_dir: Path | None = None,
    source_folder: Path | None = None,
) -> OnnxTransformer:
    """An :class:`OnnxTransformer` for ``model``'s current weights (exported or read from the cache)."""
    if not onnxruntime_available():
        raise missing_onnxruntime()
    names = tuple(n for n in MODEL_INPUTS if n in input_names)
    path = cached_export(model, model_name, names, variant, cache_dir, source_folder)
    return OnnxTransformer(path, names, threads)
