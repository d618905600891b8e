"""One module per benchmark question; each declares ``QUESTION`` (a :class:`benchmarks.harness.Question`)."""

from __future__ import annotations

import importlib

from benchmarks.harness import Question

#: Question name -> its module under ``benchmarks/questions``.
QUESTIONS = {
    "quality": "quality",
    "latency": "latency",
    "hotpath": "hotpath",
    "coldstart": "coldstart",
    "encoders": "encoders",
    "multilingual": "multilingual",
    "language_detection": "language_detection",
    "rerank": "rerank",
    "service": "service",
    "resilience": "resilience",
    "multivector": "multivector",
    "prf": "prf",
    "tuning": "tuning",
    "crash_trials": "crash_trials",
    "cache": "caches",
}


def question(name: str) -> Question:
    """The :class:`Question` named ``name``."""
    return importlib.import_module(f"benchmarks.questions.{QUESTIONS[name]}").QUESTION
