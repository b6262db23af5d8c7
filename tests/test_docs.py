"""The documentation points at things that exist, and the README starts with its commands.

Checked over README.md and docs/*.md: every relative Markdown link names a file that
exists (and, with ``#anchor``, a heading of that file); every ``mlwatch/...py`` (or
``tests/``, ``bench/``) path written in backticks exists; every page of docs/ is linked
from the README; the README's first fenced block holds the demo and test commands.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
COMMANDS = [
    "pip install -e '.[all]' && mlwatch demo",
    "pip install -e '.[test]' && python -m pytest",
]

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PATH = re.compile(r"(?<![\w./-])((?:mlwatch|tests|bench)/[\w./-]*\.py)\b")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (their lines left empty)."""
    out, fence = [], None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(text).splitlines():
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file (or heading) does not exist."""
    text = _CODE_SPAN.sub("", prose(page.read_text(encoding="utf-8")))
    problems = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            problems.append(f"{page.name}: link to {target}: no such file")
        elif (
            anchor
            and path.suffix == ".md"
            and anchor not in anchors(path.read_text(encoding="utf-8"))
        ):
            problems.append(f"{page.name}: link to {target}: no such heading")
    return problems


def missing_paths(page: Path, root: Path = REPO) -> list[str]:
    """Paths of Python files named in backticks in ``page`` that do not exist."""
    problems = []
    for span in _CODE_SPAN.findall(prose(page.read_text(encoding="utf-8"))):
        for path in _PATH.findall(span):
            if not (root / path).is_file():
                problems.append(f"{page.name}: `{path}` does not exist")
    return problems


def leading_commands(text: str) -> list[str]:
    """The commands of the first fenced block (comments dropped), which must come right
    after the title."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if _FENCE.match(line))
    before = [line for line in lines[:start] if line.strip()]
    assert len(before) == 1 and before[0].startswith("# "), (
        f"only the title may come before the first fenced block, found {before[1:]}"
    )
    end = next(i for i in range(start + 1, len(lines)) if _FENCE.match(lines[i]))
    return [re.sub(r"\s+#.*$", "", line).strip() for line in lines[start + 1 : end] if line.strip()]


def test_there_are_docs() -> None:
    assert README.is_file() and len(DOCS) >= 10, [p.name for p in DOCS]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_paths_exist(page: Path) -> None:
    assert missing_paths(page) == []


def test_every_doc_is_linked_from_the_readme() -> None:
    links = set(_LINK.findall(prose(README.read_text(encoding="utf-8"))))
    unlinked = [p.name for p in DOCS if f"docs/{p.name}" not in links]
    assert unlinked == [], f"add these to the README's table of contents: {unlinked}"


def test_readme_starts_with_the_two_commands() -> None:
    assert leading_commands(README.read_text(encoding="utf-8")) == COMMANDS


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A made-up link, heading and module path are each reported, as is a README whose
    first block is not the two commands."""
    (tmp_path / "other.md").write_text("# Other\n\n## A heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-heading) [ok](#page) [web](https://example.com/x.md)\n"
        "[gone](nowhere.md) [no heading](other.md#missing) `[not a link](code.md)`\n\n"
        "```\n[in a block](block.md) `mlwatch/in_block.py`\n```\n\n"
        "`mlwatch/settings/loader.py` exists, `mlwatch/made_up.py` does not, nor\n"
        "`python -c x tests/nope_test.py`.\n"
    )
    assert broken_links(page) == [
        "page.md: link to nowhere.md: no such file",
        "page.md: link to other.md#missing: no such heading",
    ]
    assert missing_paths(page) == [
        "page.md: `mlwatch/made_up.py` does not exist",
        "page.md: `tests/nope_test.py` does not exist",
    ]
    assert slug("Offline, for CI: `mlwatch drift`") == "offline-for-ci-mlwatch-drift"
    assert slug("Fluentd / Fluent Bit") == "fluentd--fluent-bit"
    readme = "# t\n\n```bash\npip install -e '.[all]' && mlwatch demo   # demo\n```\n"
    assert leading_commands(readme) != COMMANDS
    with pytest.raises(AssertionError, match="only the title"):
        leading_commands("# t\n\nintro\n\n```\n" + "\n".join(COMMANDS) + "\n```\n")
