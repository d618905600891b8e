"""Reports of evaluation and tuning: JSON (stable schema), Markdown tables, PNG plots.

JSON schemas are named in the ``schema`` key (``hybrid-retriever/eval/1``,
``hybrid-retriever/tuning/1``, ``hybrid-retriever/prf-tuning/1`` under the tuning
report's ``prf`` key); keys are only ever added, never renamed. Plots
need matplotlib (``pip install 'hybrid-retriever[eval]'``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.prf_tuning import PRFTuningResult
from hybrid_retriever.evaluation.runner import EvalResult
from hybrid_retriever.evaluation.tuning import TuningResult


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj.as_dict()`` (or a plain dict) as indented JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = obj.as_dict() if hasattr(obj, "as_dict") else obj
    p.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return p


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def _fold_table(folds: list[dict[str, Any]], baseline: str) -> list[str]:
    """Markdown rows: per cross-validation fold, the pick made on the other folds and its scores."""
    lines = [f"| fold | held-out queries | chosen on the other folds | train | held out | {baseline} |", "|---|---|---|---|---|---|"]
    for f in folds:
        lines.append(f"| {f['fold']} | {f['n_heldout']} | `{f['chosen']}` | {_f(f['train_score'])} | "
                     f"{_f(f['heldout_score'])} | {_f(f['default_heldout_score'])} |")
    return lines + [""]


def _f(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.3g}" if p >= 0.001 else "<0.001"


# ------------------------------------------------------------------------ markdown


def eval_markdown(result: EvalResult) -> str:
    """A Markdown report: metrics per system, candidate recall, latency, significance, warnings."""
    d = result.data
    lines = [f"## Evaluation: {d.get('name') or d.get('source')}" + (f" ({d['split']})" if d.get("split") else ""), ""]
    lines.append(f"{len(result.qids)} judged queries, {d.get('judgements')} judgements.")
    lines.append("")
    head = ["system", *result.metrics, "cand. recall", "latency mean ms", "p95 ms"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for s in result.systems.values():
        lat = s.latency_ms
        mean = lat.get("mean", lat.get("encode_mean"))
        p95 = lat.get("p95", lat.get("encode_p95"))
        name = f"{s.name} (depth {s.depth})" if s.kind in ("branch", "reranked") else s.name
        lines.append("| " + " | ".join([name, *(_f(s.mean[m]) for m in result.metrics), _f(s.candidate_recall),
                                        _f(mean, 1), _f(p95, 1)]) + " |")
    u = result.union_recall
    if u.get("value") is not None:  # None: evaluated through a service, which answers fused lists only
        lines.append("| union of branches | " + " | ".join("" for _ in result.metrics) + f" | {_f(u['value'])} | | |")
    lines.append("")
    lines.append("Candidate recall is Recall@depth of each branch's own list; the union's is the ceiling fusion and "
                 "reranking can reach. Branch latency is query encoding; fused latency is search (all branches, "
                 "score completion included) plus fusion.")
    rr = result.systems.get("reranked")
    if rr is not None and rr.latency_ms:
        lines.append("")
        lines.append(f"Reranked latency is the fused latency plus the reranker's scoring of the fused top {rr.depth}: "
                     f"{_f(rr.latency_ms.get('added_mean'), 1)} ms added per query on average "
                     f"(p95 {_f(rr.latency_ms.get('added_p95'), 1)} ms), "
                     f"{_f(rr.latency_ms.get('ratio_mean'), 2)}× the fused mean.")
    if result.significance:
        lines += ["", f"Paired {result.significance[0]['test']} test on {result.main_metric}, fused vs each:", "",
                  "| system | its mean | fused mean | difference | p-value |", "|---|---|---|---|---|"]
        for s in result.significance:
            lines.append(f"| {s['a']} | {_f(s['mean_a'])} | {_f(s['mean_b'])} | {s['mean_diff']:+.4f} | {_p(s['p_value'])} |")
    if result.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def tuning_markdown(result: TuningResult, top: int = 10) -> str:
    """A Markdown report of a tuning run: choice, validation, significance, top configurations."""
    held = "k-fold cross-validation over queries" if result.validation == "cv" else "the dev split"
    sig = result.significance
    lines = [
        f"## Tuning on {result.metric}",
        "",
        f"{result.n_configs} configurations scored on {result.n_queries} tuning queries in {result.seconds:.1f} s.",
        "",
        "| | " + result.metric + " |",
        "|---|---|",
        f"| chosen config, on the tuning queries (optimistic) | {_f(result.best_score)} |",
        f"| tuned, held out ({held}) | {_f(result.heldout_score)} |",
        f"| default config, same held-out queries | {_f(result.default_heldout_score)} |",
        f"| paired {sig.get('test')} test, tuned vs default held out: p | {_p(sig.get('p_value'))} |",
        "",
        f"Chosen: `{result.best.label(result.branches)}`"
        + (" — the default, kept because no configuration beat it by more than one standard error (selection `one-se`)"
           if result.best == result.default and result.selection == "one-se" else ""),
        "",
        f"Default: `{result.default.label(result.branches)}`",
        "",
    ]
    if result.validation == "cv":
        lines += _fold_table(result.folds, "default held out")
    lines += [f"Top {min(top, len(result.top))} on the tuning queries:", "", "| # | configuration | score |", "|---|---|---|"]
    for t in result.top[:top]:
        lines.append(f"| {t['rank']} | `{t['label']}` | {_f(t['score'])} |")
    return "\n".join(lines) + "\n"


def prf_markdown(result: PRFTuningResult, top: int = 10) -> str:
    """A Markdown report of a PRF tuning run: choice, held-out score against no PRF, wins/losses, cost.

    >>> res = tune_prf(retriever, data.queries, data.qrels)                   # doctest: +SKIP
    >>> print(prf_markdown(res).splitlines()[0])                               # doctest: +SKIP
    ## Tuning PRF on ndcg@10
    """
    held = "k-fold cross-validation over queries" if result.validation == "cv" else "the dev split"
    sig = result.significance
    runs = [ms for ms in result.prf_ms_per_query[1:]]
    lines = [
        f"## Tuning PRF on {result.metric}",
        "",
        f"{len(result.labels) - 1} PRF settings and no PRF on top of `{result.fusion}`; "
        f"{result.n_queries} tuning queries. The first stage ran once ({result.first_stage_seconds:.1f} s), then each "
        f"setting's second stage ({np.mean(runs) if runs else 0.0:.1f} ms/query on average); {result.seconds:.1f} s in all.",
        "",
        "| | " + result.metric + " |",
        "|---|---|",
        f"| chosen setting, on the tuning queries (optimistic) | {_f(result.best_score)} |",
        f"| chosen, held out ({held}) | {_f(result.heldout_score)} |",
        f"| no PRF, same held-out queries | {_f(result.default_heldout_score)} |",
        f"| paired {sig.get('test')} test, chosen vs no PRF held out: p | {_p(sig.get('p_value'))} |",
        f"| held-out queries better / worse / equal than no PRF | {result.wins} / {result.losses} / {result.ties} |",
        "",
        f"Chosen: `{result.chosen_label}`"
        + (" — no PRF, kept because no setting beat it by more than one standard error (selection `one-se`)"
           if result.best_index == 0 and result.selection == "one-se" else ""),
        "",
    ]
    if result.data.get("note"):
        lines += [f"Note: {result.data['note']}", ""]
    if result.validation == "cv":
        lines += _fold_table(result.folds, "no PRF held out")
    lines += [f"Top {min(top, len(result.top))} on the tuning queries (applied: share of queries the guard let PRF change):",
              "", "| # | setting | score | applied | PRF ms/query |", "|---|---|---|---|---|"]
    for t in result.top[:top]:
        lines.append(f"| {t['rank']} | `{t['label']}` | {_f(t['score'])} | {t['applied']:.0%} | {t['prf_ms_per_query']:.1f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the eval extra
        raise InvalidInputError("plots need matplotlib: pip install 'hybrid-retriever[eval]'") from None
    return plt


def plot_per_query_difference(result: EvalResult, path: str | Path, metric: str | None = None) -> Path:
    """Per-query score of the fused ranking minus the best single branch, sorted (a bar per query)."""
    plt = _plt()
    m = metric or result.main_metric
    best = result.best_branch
    diff = result.systems["fused"].per_query[m] - result.systems[best].per_query[m]
    order = np.sort(diff)[::-1]
    wins, losses = int((diff > 1e-12).sum()), int((diff < -1e-12).sum())
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colors = ["#2a9d8f" if x > 0 else "#e76f51" if x < 0 else "#999999" for x in order]
    ax.bar(np.arange(len(order)), order, width=1.0, color=colors)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("queries, sorted by difference")
    ax.set_ylabel(f"Δ {m}")
    ax.set_title(f"fused − {best} ({m}): mean {diff.mean():+.4f}; better on {wins}, worse on {losses}, "
                 f"equal on {len(diff) - wins - losses}", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_metric_vs_depth(result: EvalResult, path: str | Path) -> Path:
    """Recall@k and nDCG@k against k for each branch and the fusion; the union's candidate recall dashed."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, curve in zip(axes, ("recall", "ndcg")):
        for s in result.systems.values():
            c = s.curves.get(curve, {})
            if c:
                ks = sorted(c)
                ax.plot(ks, [c[k] for k in ks], marker="o", ms=3, label=s.name, lw=2 if s.kind == "fused" else 1.2)
        if curve == "recall" and result.union_recall.get("value") is not None:
            ax.axhline(result.union_recall["value"], ls="--", color="gray", lw=1, label="union of candidates")
        ax.set_xscale("log")
        ax.set_xlabel("k (depth of the ranking)")
        ax.set_ylabel(f"{'Recall' if curve == 'recall' else 'nDCG'}@k")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    name = result.data.get("name") or ""
    fig.suptitle(f"{name}: metric vs depth", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_weight_line(result: TuningResult, path: str | Path, families: Sequence[str] | None = None) -> Path:
    """Two branches: the metric over the first branch's weight, one line per fusion family (at its best depths)."""
    plt = _plt()
    if len(result.branches) != 2:
        raise InvalidInputError("the weight line is for two branches; use plot_simplex for three")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    fams = families or _top_families(result, 8)
    for fam in fams:
        data = result.landscape[fam]
        xs = [w[0] for w in data["weights"]]
        ax.plot(xs, data["scores"], marker=".", lw=1.4, label=f"{fam}  (depths {_depths(data['depths'])})")
    bw = result.best.normalized_weights()[0]
    ax.axvline(bw, color="black", ls=":", lw=1)
    ax.scatter([bw], [result.best_score], color="black", zorder=5, label="chosen")
    dw = result.default.normalized_weights()[0]
    ax.scatter([dw], [result.default_score], marker="x", color="red", zorder=5, label="default")
    ax.set_xlabel(f"weight of {result.branches[0]} (1 − weight of {result.branches[1]})")
    ax.set_ylabel(result.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{result.metric} over the weight line ({result.n_queries} tuning queries)", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_simplex(result: TuningResult, path: str | Path, family: str | None = None) -> Path:
    """Three branches: the metric over the weight simplex (ternary scatter) for one fusion family."""
    plt = _plt()
    if len(result.branches) != 3:
        raise InvalidInputError("the simplex plot is for three branches")
    fam = family or result.best.family
    data = result.landscape[fam]
    W = np.asarray(data["weights"], dtype=np.float64)
    s = np.asarray(data["scores"], dtype=np.float64)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    xy = W @ corners
    fig, ax = plt.subplots(figsize=(6, 5.2))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=s, cmap="viridis", s=140, marker="h")
    best = np.asarray(result.best.normalized_weights()) @ corners if result.best.family == fam else None
    if best is not None:
        ax.scatter([best[0]], [best[1]], facecolors="none", edgecolors="red", s=260, lw=2, label="chosen")
        ax.legend(fontsize=8, loc="upper right")
    for (x, y), name in zip(corners, result.branches):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(0, -14 if y == 0 else 8), ha="center")
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="gray", lw=0.8)
    ax.set_axis_off()
    ax.set_aspect("equal")
    fig.colorbar(sc, ax=ax, shrink=0.7, label=result.metric)
    ax.set_title(f"{result.metric} over the weight simplex: {fam} (depths {_depths(data['depths'])})", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_tuning(result: TuningResult, path: str | Path) -> Path | None:
    """The weight line (two branches) or simplex (three); None for other branch counts."""
    if len(result.branches) == 2:
        return plot_weight_line(result, path)
    if len(result.branches) == 3:
        return plot_simplex(result, path)
    return None


def _top_families(result: TuningResult, n: int) -> list[str]:
    fams = sorted(result.landscape, key=lambda f: -max(result.landscape[f]["scores"]))
    chosen = fams[:n]
    for must in (result.best.family, result.default.family):
        if must in result.landscape and must not in chosen:
            chosen.append(must)
    return chosen


def _depths(d: dict[str, int]) -> str:
    return ",".join(str(v) for v in d.values())


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
