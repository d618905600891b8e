"""``python -m benchmarks QUESTION [--smoke] [--render-only] [--out DIR] [question options]``.

Every question writes ``<out>/<name>.json`` and ``.md`` (``--out`` defaults to ``benchmarks/results``); each
Markdown file starts with the command that regenerates it, the git commit and the configuration hash.
``--smoke`` runs the question on a tiny slice in a temporary folder (never the committed results);
``--render-only`` rewrites the Markdown from the JSON already in ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from benchmarks import harness
from benchmarks.questions import QUESTIONS, question

#: Options every question takes; they are not part of its configuration hash nor of the recorded command.
COMMON = ("question", "smoke", "render_only", "out", "datasets")


def parser(names: Iterable[str] = QUESTIONS) -> argparse.ArgumentParser:
    """The entry point's parser: one sub-command per question of ``names`` (default all; building one imports
    its module), with the common options and the question's own."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="question", required=True, metavar="QUESTION")
    for name in names:
        q = question(name)
        p = sub.add_parser(name, help=q.about, description=q.about)
        p.add_argument("--smoke", action="store_true", help="a tiny slice in a temporary folder, in seconds")
        p.add_argument("--render-only", action="store_true", help="rewrite the Markdown from the JSON in --out")
        p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results; a temporary one with --smoke)")
        p.add_argument("--datasets", type=Path, default=harness.DEFAULT_DATASETS, help="root of the BEIR collections")
        q.add_arguments(p)
    return ap


def recorded_command(argv: Sequence[str]) -> str:
    """``python -m benchmarks`` and ``argv`` without the options that only say where files go."""
    kept: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--datasets"):
            skip = True
        elif not a.startswith(("--out=", "--datasets=")) and a not in ("--render-only",):
            kept.append(a)
    return shlex.join(["python", "-m", "benchmarks", *kept])


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    one = bool(argv) and argv[0] in QUESTIONS
    ap = parser(argv[:1] if one else QUESTIONS)  # a question asked: only its module is imported
    # --smoke: the question's smoke options first, so that options given here override them.
    smoke = question(argv[0]).smoke if one and "--smoke" in argv else []
    args = ap.parse_args([*argv[:1], *smoke, *argv[1:]])
    q = question(args.question)
    options: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in COMMON}
    harness.setup_logging()
    harness.configure(args.smoke, args.out, recorded_command(argv), harness.config_hash(q.name, options))
    if args.render_only:
        found = {name: harness.read_results(name) for name in q.render}
        if not any(found.values()):
            raise SystemExit(f"--render-only: none of {', '.join(q.render)} has a JSON in {harness.SETTINGS.out}")
        for name, data in found.items():
            if data:
                harness.write_results(name, data, q.render[name](data), rendered_only=True)
        return
    try:
        q.run(args)
    finally:
        if args.smoke:  # the smoke run's cache (indexes, encoded slices) goes; its results stay in --out
            shutil.rmtree(harness.SETTINGS.cache, ignore_errors=True)
    logging.getLogger("benchmarks").info("results in %s", harness.SETTINGS.out)


if __name__ == "__main__":
    main()
