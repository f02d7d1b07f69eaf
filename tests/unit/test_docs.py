"""The README and docs/: short README, the pages a lab and a developer read, and no broken
link, picture or anchor (as GitHub renders them, and as Help › User guide follows them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from yawbcc_desktop.gui.help import heading_anchor

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = ("index", "user-guide", "command-line", "models", "training", "installing", "configuration", "architecture",
         "measurements")  # fmt: skip
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INDENTED_CODE = re.compile(r"(?:^(?: {4}|\t).*\n?)+", re.M)


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without code: links inside code blocks and spans are not links."""
    text = FENCE.sub("", text)
    text = INDENTED_CODE.sub("", text)  # (list continuations in these pages are indented by 2)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """The anchor of a Markdown heading, as the window and GitHub name it (code and links as their text)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    return heading_anchor(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text))


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{page.name}: {target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{page.name}: {target}: no heading #{anchor} in {dest.name}")
    return problems


def test_every_link_picture_and_anchor_resolves():
    problems = [p for page in markdown_files() for p in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_broken_picture_page_and_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# A page\n\n## Its part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n![shot](screenshots/missing.png) [ok](other.md#its-part) [bad](other.md#no-part) "
        "[gone](gone.md) [here](#title) `[code](not-a-link.md)`\n\n    [indented](code.md)\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert any("missing.png" in p for p in problems) and any("#no-part" in p for p in problems)
    assert any("gone.md" in p for p in problems)


def test_readme_is_short_and_keeps_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    setup = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
    assert lines[4] == f"    {setup} && .venv/bin/yawbcc-desktop ../shared/data/pbc/basophil"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert lines[8] == f"    {ci}", "the README's test command is the one .ci/run runs"
    assert "docs/index.md" in readme and "docs/screenshots/" in readme


@pytest.mark.parametrize("name", PAGES)
def test_docs_pages_are_there_and_linked_from_the_contents(name):
    page = DOCS / f"{name}.md"
    assert page.is_file()
    assert page.read_text(encoding="utf-8").startswith("# ")
    if name != "index":
        assert f"]({name}.md)" in (DOCS / "index.md").read_text(encoding="utf-8")


def test_every_environment_variable_the_code_reads_is_documented():
    code = [*(REPO / "yawbcc_desktop").rglob("*.py"), *(REPO / "training").rglob("*.py"), *(REPO / "tests").rglob("*.py"),
            *(REPO / "packaging").rglob("*"), REPO / ".ci" / "run"]  # fmt: skip
    names = set()
    for path in code:
        if path.is_file() and path.suffix in ("", ".py", ".spec"):
            names |= set(re.findall(r"YAWBCC_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8", errors="replace")))
    documented = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(n for n in names if f"`{n}`" not in documented)
    assert names and not missing, f"not in docs/configuration.md: {missing}"
