"""The README names every guide in docs/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{p.name})" not in readme
    ]
    assert missing == [], f"link these from the README's guides: {missing}"
