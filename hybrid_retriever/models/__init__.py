"""Loading models by Hugging Face id or local path, preferring offline packaged copies."""

from hybrid_retriever.models.identity import weights_sha256
from hybrid_retriever.models.resolve import (
    check_module_types,
    ensure_available,
    locate_model,
    model_reference,
    pick_device,
    resolve_model_path,
)
from hybrid_retriever.models.trust import allow_remote_code, remote_code_allowed

__all__ = [
    "allow_remote_code",
    "check_module_types",
    "ensure_available",
    "locate_model",
    "model_reference",
    "pick_device",
    "remote_code_allowed",
    "resolve_model_path",
    "weights_sha256",
]
