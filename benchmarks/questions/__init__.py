"""One module per benchmark question; each declares ``QUESTION`` (a :class:`benchmarks.harness.Question`)."""

from __future__ import annotations

import importlib

from benchmarks.harness import Question

#: Question name -> its module under ``benchmarks/questions``.
QUESTIONS = {
    "tuning": "tuning",
    "coldstart": "coldstart",
    "hotpath": "hotpath",
    "latency": "latency",
    "rerank": "rerank",
    "cache": "caches",
    "crash_trials": "crash_trials",
    "multivector": "multivector",
    "encoders": "encoders",
    "quality": "quality",
    "multilingual": "multilingual",
    "prf": "prf",
    "resilience": "resilience",
    "service": "service",
    "language_detection": "language_detection",
}


def question(name: str) -> Question:
    """The :class:`Question` named ``name``."""
    return importlib.import_module(f"benchmarks.questions.{QUESTIONS[name]}").QUESTION
