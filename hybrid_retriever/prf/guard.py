"""Drift guard: decide per query whether (and how strongly) to trust its first stage.

PRF assumes the top documents are relevant. When they are not, the rewritten query
drifts towards the wrong topic and the second stage is worse than the first. The
guard looks at signals available before any second-stage search and returns a
strength in [0, 1] (0 = skip feedback, 1 = full feedback) plus the feedback documents
it accepts:

* **agreement** — overlap of the branches' first-stage top-k lists. Measured on dev
  data (scifact train, nfcorpus dev), PRF with feedback from the fused list helps most
  where BM25 and the dense model *disagree* (the feedback carries the other branch's
  evidence into the rewritten query) and hurts where they already agree (the first
  stage is settled; feedback can only drift). So high agreement (``max_agreement``)
  skips feedback; a floor (``min_agreement``, ``full_agreement``) can also skip or damp
  feedback for first stages that look unreliable, off by default.
* **confirmed feedback** (``consensus_depth``) — a feedback document is used only if
  every other branch also ranks it highly. In the spirit of conservative PRF such as
  LoL (Zhu et al., SIGIR 2022: feedback from more documents should never be worse than
  from fewer), a query gets more feedback documents only when they are corroborated,
  never just because they were ranked next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Mapping, Sequence

from hybrid_retriever.config import PRFGuardConfig
from hybrid_retriever.types import BranchResult


@dataclass
class GuardDecision:
    """The guard's verdict for one query (and branch, for per-branch feedback lists)."""

    strength: float
    feedback: list[str]
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


def agreement(results: Mapping[str, BranchResult], k: int) -> float | None:
    """Mean pairwise overlap ``|top_k(a) ∩ top_k(b)| / k`` of the branches' lists; ``None`` with < 2 lists."""
    tops = [{h.point_id for h in r.hits[:k]} for r in results.values() if r.error is None and r.hits]
    if len(tops) < 2:
        return None
    pairs = list(combinations(tops, 2))
    return sum(len(a & b) for a, b in pairs) / (k * len(pairs))


def confirmed(candidates: Sequence[str], results: Mapping[str, BranchResult], depth: int, own: str | None = None) -> list[str]:
    """The candidates that every branch (other than ``own``) ranks within ``depth``, in order."""
    others = [
        {h.point_id for h in r.hits[:depth]}
        for name, r in results.items()
        if name != own and r.error is None and r.hits
    ]
    return [c for c in candidates if all(c in o for o in others)]


def assess(
    candidates: Sequence[str],
    results: Mapping[str, BranchResult],
    config: PRFGuardConfig,
    own: str | None = None,
) -> GuardDecision:
    """Guard one query's feedback: ``candidates`` are the top feedback documents (best first).

    ``results`` are the query's first-stage branch lists; ``own`` is the branch whose
    list supplied the candidates (None when they come from the fused list).
    """
    feedback = list(candidates)
    if not feedback:
        return GuardDecision(0.0, [], "skipped: empty first stage")
    signals: dict[str, float] = {}
    agree = agreement(results, config.agreement_k)
    if agree is not None:
        signals["agreement"] = agree
    if not config.enabled:
        return GuardDecision(1.0, feedback, "applied (guard off)", signals)
    strength = 1.0
    reasons: list[str] = []
    if agree is not None:
        if config.max_agreement is not None and agree >= config.max_agreement:
            return GuardDecision(0.0, [], f"skipped: branches already agree ({agree:.2f} >= {config.max_agreement})", signals)
        if agree < config.min_agreement:
            return GuardDecision(0.0, [], f"skipped: branch agreement {agree:.2f} < {config.min_agreement}", signals)
        if config.full_agreement > config.min_agreement and agree < config.full_agreement:
            strength = (agree - config.min_agreement) / (config.full_agreement - config.min_agreement)
            reasons.append(f"damped: branch agreement {agree:.2f}")
    if config.consensus_depth is not None:
        kept = confirmed(feedback, results, config.consensus_depth, own)
        signals["confirmed"] = float(len(kept))
        if len(kept) < len(feedback):
            reasons.append(f"{len(feedback) - len(kept)} unconfirmed feedback document(s) dropped")
        feedback = kept
    if len(feedback) < config.min_feedback:
        return GuardDecision(0.0, [], f"skipped: {len(feedback)} usable feedback document(s) < {config.min_feedback}", signals)
    if strength <= 0.0:
        return GuardDecision(0.0, [], "skipped: " + "; ".join(reasons), signals)
    return GuardDecision(strength, feedback, "; ".join(reasons) or "applied", signals)
