"""The ```python examples of docs/*.md run as written.

Each page's blocks run in order in one namespace (a later block may use an earlier one's
names), in a fresh temporary working directory, so artifacts such as ``savedmodels/doc/...``
land there. A block is skipped only when the line just before its fence (blank lines aside) is
an HTML comment ``<!-- not run: why -->``: it needs something the suite cannot have (say, the
user's own ``build_and_compile`` in distribute.md). The examples train tiny models for an epoch
or two, so the file is marked ``slow``.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_FENCE = re.compile(r"^```python\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:.*-->\s*$")


def _blocks(page: Path) -> list[tuple[int, str, bool]]:
    """(first line number, code, skipped) for each ```python block of ``page``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[int, str, bool]] = []
    i = 0
    while i < len(lines):
        if not _FENCE.match(lines[i]):
            i += 1
            continue
        before = [line for line in lines[:i] if line.strip()]
        skipped = bool(before) and bool(_NOT_RUN.match(before[-1].strip()))
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.name}:{i + 1}: the ```python block is never closed")
        blocks.append((i + 2, "\n".join(lines[i + 1 : end]) + "\n", skipped))
        i = end + 1
    return blocks


PAGES = sorted(p for p in DOCS.glob("*.md") if _blocks(p))


def test_every_page_with_examples_is_collected() -> None:
    # a page whose fence is mistyped (```py, ``` python) would silently run nothing
    for page in DOCS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        loose = re.findall(r"^```\s*py(?:thon)?\b.*$", text, flags=re.M)
        assert len(loose) == len(_blocks(page)), (
            f"{page.name}: a python fence is not exactly ```python: {loose}"
        )
    assert PAGES, f"no ```python block found under {DOCS}"


def test_a_broken_example_fails(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n```python\ny = x + missing\n```\n")
    with pytest.raises(AssertionError, match=r"broken\.md:8 \(block from line 8\)"):
        _run_page(page)


def test_the_not_run_marker_skips_only_its_block(tmp_path: Path) -> None:
    page = tmp_path / "marked.md"
    page.write_text(
        "<!-- not run: needs your own build_and_compile -->\n```python\nbuild_and_compile()\n"
        "```\n\n```python\nok = True\n```\n"
    )
    assert [skipped for _, _, skipped in _blocks(page)] == [True, False]
    assert _run_page(page)["ok"] is True


def _run_page(page: Path) -> dict:
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for line, code, skipped in _blocks(page):
        if skipped:
            continue
        # padded so that tracebacks give the line number in the markdown file
        padded = "\n" * (line - 1) + code
        try:
            exec(compile(padded, str(page), "exec"), namespace)  # noqa: S102
        except Exception as e:
            failing = [
                f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == str(page)
            ]
            at = failing[-1] if failing else line
            raise AssertionError(
                f"{page.name}:{at} (block from line {line}): the example fails with "
                f"{type(e).__name__}: {e}"
            ) from e
    return namespace


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_docs_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the pages describe a plain machine: a TF_CONFIG left in this worker's environment by an
    # earlier test would turn get_strategy("auto") into a multi-worker strategy
    monkeypatch.delenv("TF_CONFIG", raising=False)
    _run_page(page)
