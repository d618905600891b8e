"""How many words language detection needs to be right, and when a growing index decides its BM25 language.

    python -m benchmarks language_detection
    python -m benchmarks language_detection --trials 200 --streams 10   # a quick look

With the library's detector, on the shared collections (English, and xquad-r de and zh): the accuracy of random
passages of N words, which gives ``WORDS_TO_DECIDE``; then documents cut into sentences added one at a time to a
growing index (one language, or 50/50 mixtures of two), for ``decide_language`` at several ``DOCUMENTS_TO_SETTLE``
and the old rule (decide on the first batch). Detection reads no queries or judgements: nothing is tuned on a test split.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from typing import Any, Sequence

from benchmarks.harness import (SETTINGS, Question, load_collection, log, machine_info, machine_md, md_table,
    write_results)

from hybrid_retriever import languages as L

#: Each collection and the language its documents are written in.
COLLECTIONS = {
    "scifact": "english",
    "nfcorpus-preprocessed": "english",
    "cranfield": "english",
    "cisi": "english",
    "xquad-r/en": "english",
    "xquad-r/de": "german",
    "xquad-r/zh": "chinese",
}
LENGTHS = [1, 2, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 75, 100]
MIXTURES = [("xquad-r/en", "xquad-r/de"), ("xquad-r/en", "xquad-r/zh"), ("xquad-r/de", "xquad-r/zh")]
#: Sample sizes (documents) at which the decision becomes final, compared; the library's is DOCUMENTS_TO_SETTLE.
SETTLES = [1, 10, 20, 30]
#: The old rule decided on the first batch: these batch sizes.
OLD_RULE_DOCS = [1, 2, 5]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words ``count_words`` counts, in order."""
    spans = []
    for m in re.finditer(r"\S+", text):
        cjk = list(L._CJK.finditer(m.group()))
        if cjk:
            spans += [(m.start() + c.start(), m.start() + c.end()) for c in cjk]
        elif any(ch.isalpha() for ch in m.group()):
            spans.append((m.start(), m.end()))
    return spans


def passage(docs: Sequence[tuple[str, list[tuple[int, int]]]], n: int, rng: random.Random) -> str:
    """``n`` consecutive words from a random document, continued in others when it ends."""
    parts, need = [], n
    while need > 0:
        text, spans = docs[rng.randrange(len(docs))]
        start = rng.randrange(len(spans))
        end = min(len(spans), start + need)
        parts.append(text[spans[start][0] : spans[end - 1][1]])
        need -= end - start
    return " ".join(parts)


def passage_accuracy(texts: list[str], language: str, trials: int, seed: int) -> dict[int, float]:
    docs = [(t, s) for t in texts if (s := word_spans(t))]
    detector = L._detector()
    out = {}
    for n in LENGTHS:
        rng = random.Random(f"{seed}-{n}")
        right = 0
        for _ in range(trials):
            lang = detector.detect_language_of(passage(docs, n, rng))
            right += lang is not None and L._name(lang) == language
        out[n] = right / trials
    return out


def choose_words(accuracy: dict[str, dict[int, float]], target: float) -> int | None:
    """The smallest length at which every collection reaches ``target``, there and at every longer length."""
    for i, n in enumerate(LENGTHS):
        if all(acc[m] >= target for acc in accuracy.values() for m in LENGTHS[i:]):
            return n
    return None


def sentences(texts: list[str]) -> list[str]:
    return [s.strip() for t in texts for s in _SENTENCE_END.split(t) if L.count_words(s)]


def grow(stream: list[str], first: int, settles: Sequence[int]) -> dict[int, tuple[L.LanguageDetection | None, int, int]]:
    """Add the ``first`` documents as one batch, then one at a time. For each ``settle``: the decision in force once a
    language is found in a sample of at least ``settle`` documents (or the sample is full): (decision, documents, words)."""
    out: dict[int, tuple[L.LanguageDetection | None, int, int]] = {}
    for n in range(first, len(stream) + 1):
        det = L.decide_language(stream[:n])
        for settle in settles:
            if settle not in out and det is not None and det.sampled >= settle:
                out[settle] = (det, n, sum(L.count_words(t[: L.SAMPLE_CHARS]) for t in stream[:n]))
        if len(out) == len(settles):
            break
    words = sum(L.count_words(t[: L.SAMPLE_CHARS]) for t in stream)
    return {settle: out.get(settle, (None, len(stream), words)) for settle in settles}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    words = [r["words"] for r in runs if r["decided"]]
    docs = [r["documents"] for r in runs if r["decided"]]
    return {
        "streams": len(runs),
        "decided": sum(r["decided"] for r in runs),
        "right": sum(r["right"] for r in runs),
        "words_median": statistics.median(words) if words else None,
        "words_max": max(words) if words else None,
        "documents_median": statistics.median(docs) if docs else None,
        "documents_max": max(docs) if docs else None,
        "wrong": [r for r in runs if r["decided"] and not r["right"]],
    }


def _runs(streams: list[list[str]], first: int, settles: Sequence[int], right: Any) -> dict[str, Any]:
    per: dict[int, list[dict[str, Any]]] = {s: [] for s in settles}
    for stream in streams:
        for settle, (det, n_docs, n_words) in grow(stream, first, settles).items():
            per[settle].append({"decided": det is not None, "right": det is not None and right(det), "documents": n_docs,
                                "words": n_words, "language": det.language if det else None,
                                "languages": L.corpus_languages(det) if det else None})
    return {str(s): summary(runs) for s, runs in per.items()}


def simulate(corpora: dict[str, list[str]], streams: int, seed: int, settles: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"single": {}, "mixed": {}, "old_rule": {}}
    for name, language in COLLECTIONS.items():
        pool = sentences(corpora[name])
        orders = [random.Random(f"{seed}-{name}-{s}").sample(pool, min(len(pool), L.SAMPLE_DOCS + 50)) for s in range(streams)]
        out["single"][name] = _runs(orders, 1, settles, lambda d, lang=language: d.language == lang and not d.mixed)
        out["old_rule"][name] = {
            str(k): sum((f := L.detect_language(o[:k])).language == language and not f.mixed for o in orders) / streams
            for k in OLD_RULE_DOCS
        }
        log.info("%s: %s", name, {k: (v["right"], v["words_median"]) for k, v in out["single"][name].items()})
    for a, b in MIXTURES:
        la, lb = COLLECTIONS[a], COLLECTIONS[b]
        pa, pb = sentences(corpora[a]), sentences(corpora[b])
        for start in ("pair", "random"):
            orders = []
            for s in range(streams):
                rng = random.Random(f"{seed}-{a}-{b}-{start}-{s}")
                stream = [rng.choice(pa) if rng.random() < 0.5 else rng.choice(pb) for _ in range(L.SAMPLE_DOCS + 50)]
                if start == "pair":  # the first batch holds one document of each language
                    stream = rng.sample([rng.choice(pa), rng.choice(pb)], 2) + stream
                orders.append(stream)
            key = f"{a}+{b.split('/')[-1]} ({start} first)"
            out["mixed"][key] = _runs(orders, 2 if start == "pair" else 1, settles,
                                      lambda d, want={la, lb}: d.mixed and set(L.corpus_languages(d)) == want)
            log.info("%s: %s", key, {k: (v["right"], v["words_median"]) for k, v in out["mixed"][key].items()})
    return out


def markdown(report: dict[str, Any]) -> str:
    acc, chosen = report["passages"], report["words_to_decide"]
    lines = [
        "# Language detection: how many words, and when a growing index decides\n",
        f"Command: `{report['command']}`\n",
        machine_md(report["machine"]),
        f"\nRuntime {report['seconds']:.0f} s. Detector: lingua {report['lingua']}, low-accuracy mode, "
        f"{len(L.DETECTABLE)} candidate languages (the library's).\n",
        f"\n## 1. Accuracy of one passage of N words ({report['trials']} random passages per cell)\n\n",
        md_table(["N words", *acc], [[n, *(f"{acc[c][str(n)]:.3f}" for c in acc)] for n in LENGTHS]),
        f"\n**WORDS_TO_DECIDE = {chosen}**: the smallest N at which every collection is at least "
        f"{report['target']:.1%} right (there and at every longer length measured). The library's constant is "
        f"{report['library_words_to_decide']}.\n",
        f"\n## 2. Growing indexes, one sentence-sized document at a time ({report['streams']} random orders each)\n\n",
        "`decide_language` with WORDS_TO_DECIDE as above; a stream is right when its final decision names the "
        "collection's language and is not mixed (mixtures: mixed, both languages analysed per document). "
        "Mixtures start with one document of each language in the first batch (pair) or come in random order.\n\n",
    ]
    sim = report["simulation"]
    settles = [str(x) for x in report["settles"]]
    chosen_settle = str(report["library_documents_to_settle"])
    rows = [[name, *(f"{s[x]['right']}/{s[x]['streams']}" for x in settles), s["1"]["words_median"], s["1"]["words_max"],
             s[chosen_settle]["documents_median"], s[chosen_settle]["documents_max"]]
            for name, s in {**sim["single"], **sim["mixed"]}.items()]
    lines.append(md_table(["stream", *(f"right, final at {x} document{'s' if x != '1' else ''}" for x in settles),
                           "words to find the language (median)", "(max)",
                           f"documents until final at {chosen_settle} (median)", "(max)"], rows))
    lines.append(
        f"\nA language is found once the words suffice (WORDS_TO_DECIDE); the decision is final once the sample also "
        f"holds DOCUMENTS_TO_SETTLE documents (the library's: {chosen_settle}); before, it is decided again at every "
        "ingest. With 1, the first language found is final: a 50/50 mixture added in random order is then often "
        "decided on its first sentence or two, all in one language. The columns for larger values show how many "
        "documents a mixture needs before it reliably looks mixed (a binomial matter: with 20 documents, a 50/50 "
        "mixture shows under 20% of one language about 1% of the time).\n\n")
    lines.append("The old rule (decide on the first batch and keep it): share of streams analysed in the right "
                 "language, by the size of the first batch.\n\n")
    lines.append(md_table(["collection", *(f"first {k} document{'s' if k > 1 else ''}" for k in OLD_RULE_DOCS)],
                          [[name, *(f"{v[str(k)]:.2f}" for k in OLD_RULE_DOCS)] for name, v in sim["old_rule"].items()]))
    wrong = [(f"{name}, final at {chosen_settle}", r) for part in ("single", "mixed")
             for name, s in sim[part].items() for r in s[chosen_settle]["wrong"]]
    lines.append(f"\nWrong decisions with the library's settings: {len(wrong) or 'none'}"
                 + ("" if not wrong else " (all wrong decisions, every setting, are in the JSON):\n\n"
                    + "".join(f"- {n}: {r}\n" for n, r in wrong[:10])) + "\n")
    return "".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--trials", type=int, default=1000, help="random passages per collection and length")
    ap.add_argument("--streams", type=int, default=40, help="random document orders per collection or mixture")
    ap.add_argument("--target", type=float, default=0.995, help="accuracy every collection must reach")
    ap.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    info = machine_info()
    t0 = time.perf_counter()
    corpora = {name: load_collection(args.datasets, name).texts for name in COLLECTIONS}
    passages = {}
    for name, language in COLLECTIONS.items():
        passages[name] = passage_accuracy(corpora[name], language, args.trials, args.seed)
        log.info("%s: %s", name, passages[name])
    chosen = choose_words(passages, args.target)
    library = L.WORDS_TO_DECIDE
    try:
        if chosen is not None:
            L.WORDS_TO_DECIDE = chosen  # the growing-index simulation runs with the measured value
        simulation = simulate(corpora, args.streams, args.seed, SETTLES)
    finally:
        L.WORDS_TO_DECIDE = library  # the process's library keeps its own value (the smoke runs in-process)
    from importlib import metadata

    report = {
        "command": SETTINGS.command,
        "machine": info,
        "lingua": metadata.version("lingua-language-detector"),
        "trials": args.trials,
        "streams": args.streams,
        "target": args.target,
        "lengths": LENGTHS,
        "passages": {name: {str(n): v for n, v in acc.items()} for name, acc in passages.items()},
        "words_to_decide": chosen,
        "library_words_to_decide": library,
        "settles": SETTLES,
        "library_documents_to_settle": L.DOCUMENTS_TO_SETTLE,
        "simulation": simulation,
        "seconds": time.perf_counter() - t0,
    }
    write_results("language_detection", report, markdown(report))


QUESTION = Question("language_detection", "words language detection needs; when a growing index decides its BM25 language",
                    add_arguments, run, {"language_detection": markdown}, smoke=["--trials", "5", "--streams", "2"])
