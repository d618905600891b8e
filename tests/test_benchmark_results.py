"""The benchmarks still run and their results still say how to regenerate them.

- Every ``benchmarks/results/*.md`` starts with the provenance header (``benchmarks.harness.HEADER``) whose
  commands the entry point's parser still accepts, and its JSON records the same provenance.
- ``python -m benchmarks QUESTION --smoke`` runs every question on a tiny slice of the shared datasets
  (temporary folders, no caches); the parts that need CUDA say so.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.__main__ import main, parser
from benchmarks.questions import QUESTIONS, question
from conftest import DATASETS, require_dataset

RESULTS = sorted(harness.RESULTS.glob("*.md"))


def test_results_exist() -> None:
    assert len(RESULTS) >= 20, RESULTS


@pytest.mark.parametrize("md", RESULTS, ids=[p.name for p in RESULTS])
def test_result_header_names_a_command_that_still_parses(md: Path) -> None:
    first = md.read_text(encoding="utf-8").splitlines()[0]
    m = harness.HEADER.match(first)
    assert m, f"{md.name}: the first line is not the provenance header (> Regenerate: `python -m benchmarks ...` · git ... · config ...): {first!r}"
    ap = parser()
    for command in m["commands"].strip("`").split("` + `"):
        words = shlex.split(command)[3:]  # after python -m benchmarks
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                args = ap.parse_args(words)
            except SystemExit:
                pytest.fail(f"{md.name}: `{command}` no longer parses: {err.getvalue().strip().splitlines()[-1]}")
        assert md.stem in question(args.question).render, f"{md.name}: {args.question} does not render it"
    prov = json.loads(md.with_suffix(".json").read_text(encoding="utf-8"))["provenance"]
    assert (prov["git_commit"], prov["config_hash"]) == (m["commit"], m["config"]), f"{md.name}: header and JSON disagree"


#: The documents that quote benchmark commands to their readers.
DOCS = [harness.REPO / "README.md", harness.BENCH / "README.md", *sorted((harness.REPO / "docs").glob("*.md"))]
#: A quoted command: inside a code span (which may wrap onto a second line), or on a line of a code block (up to a comment).
QUOTED = re.compile(r"python -m benchmarks ([^`#\n]+(?:\n[^`#\n]+)?)`|python -m benchmarks ([^`#\n]+)")


def quoted_commands(text: str) -> list[list[str]]:
    """The argument lists of the concrete ``python -m benchmarks`` commands in ``text`` (not the synopses that
    name a placeholder QUESTION, optional ``[...]`` parts or an ellipsis); ``OLD_CHECKOUT`` stands for any folder."""
    found = []
    for m in QUOTED.finditer(text):
        words = shlex.split((m[1] or m[2]).replace("OLD_CHECKOUT", "/old"))
        if words and "QUESTION" not in words and not any(w.startswith("[") or w in ("…", "...") for w in words):
            found.append(words)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(harness.REPO)) for p in DOCS])
def test_documents_quote_commands_that_still_parse(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    old = re.findall(r"python3? benchmarks/\w+\.py", text)
    assert not old, f"{doc.name} quotes benchmark scripts that no longer exist: {old}; quote `python -m benchmarks QUESTION ...`"
    ap = parser()
    for words in quoted_commands(text):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                ap.parse_args(words)
            except SystemExit:
                pytest.fail(f"{doc.name}: `python -m benchmarks {shlex.join(words)}` no longer parses: "
                            f"{err.getvalue().strip().splitlines()[-1]}")


def test_quoted_commands_are_found() -> None:
    text = "run `python -m benchmarks latency --stores edge\n--queries 150` or\n    nice python -m benchmarks prf tune   # dev\n"
    assert quoted_commands(text) == [["latency", "--stores", "edge", "--queries", "150"], ["prf", "tune"]]
    assert quoted_commands("`python -m benchmarks QUESTION [--smoke]`") == []


def test_header_check_catches_a_removed_option() -> None:
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parser().parse_args(["quality", "--no-such-option"])
    assert not harness.HEADER.match("# Retrieval quality")


@pytest.fixture
def isolated() -> object:
    """Undo what a question changes in this process (torch threads, frozen GC objects); logging is
    restored for every test by conftest's ``_logging_as_found``."""
    import torch

    from hybrid_retriever import languages

    threads = torch.get_num_threads()
    words_to_decide = languages.WORDS_TO_DECIDE
    yield
    torch.set_num_threads(threads)
    gc.unfreeze()
    assert languages.WORDS_TO_DECIDE == words_to_decide, "a question left the library's WORDS_TO_DECIDE changed"


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_smoke(name: str, tmp_path: Path, isolated: object) -> None:
    require_dataset(DATASETS)
    main([name, "--smoke", "--out", str(tmp_path)])
    for result in question(name).render:
        if (tmp_path / f"{result}.json").is_file():
            assert harness.HEADER.match((tmp_path / f"{result}.md").read_text(encoding="utf-8").splitlines()[0])
    assert not (harness.SETTINGS.out.resolve() == harness.RESULTS.resolve())


@pytest.mark.parametrize("argv", [["multivector", "--parts", "device", "--smoke"], ["rerank", "gpu-check"]])
def test_device_parts_say_they_need_cuda(argv: list[str], tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device parts run for real there")
    with pytest.raises(SystemExit, match="needs CUDA"):
        main([*argv, "--out", str(tmp_path)])
