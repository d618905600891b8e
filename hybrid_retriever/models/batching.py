"""Row slices of a tokenised batch that keep each forward pass under a token budget.

Shared by the torch encoder (:mod:`hybrid_retriever.models.sentence_encoder`) and the
torch-free one (:mod:`hybrid_retriever.models.onnx_encoder`), so both group rows the same way.

>>> list(token_slices([5, 4, 1], width=5, max_batch_tokens=8))
[(0, 1, 5), (1, 3, 4)]
"""

from __future__ import annotations

from typing import Iterator, Sequence


def token_slices(lengths: Sequence[int], width: int, max_batch_tokens: int | None) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, longest)`` for consecutive row slices of at most ``max_batch_tokens`` tokens.

    ``lengths`` are the rows' token counts, longest first (as the encoders sort them), and
    ``width`` the padded batch width; when everything fits, one slice of the whole batch at
    that width. Each other slice is cut to its own longest row.
    """
    n = len(lengths)
    if max_batch_tokens is None or n * width <= max_batch_tokens:
        yield 0, n, width
        return
    start = 0
    while start < n:
        stop = min(n, start + max(1, max_batch_tokens // max(int(lengths[start]), 1)))
        yield start, stop, int(max(lengths[start:stop]))  # rows are sorted by characters, not tokens
        start = stop
