"""The documentation: the MkDocs site builds with no warning (dead links and anchors are warnings), the
README stays short and its links into docs/ resolve, the GRPO page holds the generated mapping table,
and the pages speak of the project, not of how it was made."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, inline code removed."""
    lines, fence = [], None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            fence = None
        elif fence is None:
            lines.append(re.sub(r"`+[^`]*`+", "", line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (duplicates numbered as GitHub numbers them)."""
    seen: dict[str, int] = {}
    found = set()
    fence = None
    for line in path.read_text().splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            continue
        if match := HEADING.match(line):
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_the_site_builds_with_no_warning(tmp_path):
    """`mkdocs build --strict` with mkdocs.yml's validation: a dead link, a missing anchor or a page
    left out of the nav is a warning, and a warning fails the build."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml")]
    done = subprocess.run(
        [*command, "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in PAGES:  # every page of docs/ became a page of the site
        assert ("index.html" if page.stem == "index" else f"{page.stem}/index.html") in built, page.name


def test_the_readme_is_at_most_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_links_resolve_to_files_and_headings():
    """MkDocs checks docs/ only; the README's relative links (into docs/, to images, to its own
    headings) are checked here, anchors as GitHub renders them."""
    broken = []
    links = [m.group(1) for m in LINK.finditer("\n".join(prose_lines(README.read_text())))]
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in relative), "the README links into docs/"
    for link in relative:
        target, _, anchor = link.partition("#")
        path = README if not target else (REPO / target)
        if not path.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with anchor #{anchor} in {target or 'README.md'}")
    assert not broken, "\n".join(broken)


def test_the_grpo_page_holds_the_generated_mapping_table():
    from m2rl.engine.grpo import mapping_markdown

    assert mapping_markdown() in (REPO / "docs" / "grpo.md").read_text()


def test_the_pages_speak_of_the_project_not_of_its_making():
    """Measurements carry their command, commit and date; the story of how the work was done (which
    runs accepted what, what a work session tried) stays in the git history."""
    phrases = (
        "uncommitted",
        "acceptance run",
        "this working tree",
        "where the issues were silent",
        "in one session",
        "earlier session",
        "this session",
    )
    found = [
        f"{page.name}:{number}: {phrase!r}"
        for page in [README, *PAGES]
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for phrase in phrases
        if phrase in line.lower()
    ]
    assert not found, "\n".join(found)
