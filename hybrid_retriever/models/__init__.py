"""Loading models by Hugging Face id or local path, preferring offline packaged copies."""

from hybrid_retriever.models.resolve import pick_device, resolve_model_path

__all__ = ["pick_device", "resolve_model_path"]
