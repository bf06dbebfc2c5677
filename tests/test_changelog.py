"""Changelog fragments: one per user-visible change, named so towncrier takes them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
FRAGMENTS = ROOT / "changelog.d"
TYPES = {
    entry["directory"]
    for entry in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"
    ]["towncrier"]["type"]
}
NAME = re.compile(rf"\d+\.({'|'.join(sorted(TYPES))})(\.\d+)?\.md")


def fragments() -> list[Path]:
    """Every fragment waiting for the next release."""
    return sorted(path for path in FRAGMENTS.iterdir() if path.name != "README.md")


def test_fragment_types_are_the_documented_ones() -> None:
    """pyproject's towncrier types are those changelog.d/README.md lists."""
    readme = (FRAGMENTS / "README.md").read_text(encoding="utf-8")
    assert {"added", "changed", "fixed", "removed"} == TYPES
    assert all(f"`{kind}`" in readme for kind in TYPES)


@pytest.mark.parametrize("path", fragments(), ids=lambda path: path.name)
def test_each_fragment_is_named_for_towncrier_and_holds_one_entry(path: Path) -> None:
    """<issue>.<type>[.<n>].md, one paragraph of text (towncrier skips bad names)."""
    assert NAME.fullmatch(path.name), path.name
    text = path.read_text(encoding="utf-8")
    assert text.strip()
    assert "\n\n" not in text.strip()
    assert text.endswith("\n")
