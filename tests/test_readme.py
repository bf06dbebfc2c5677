"""Every Python example in README.md runs as it is written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"

#: Upper bound on one example's run: a hang fails instead of blocking.
TIMEOUT = 60.0


def python_blocks() -> list[tuple[int, str]]:
    """Return (line number, code) of each fenced ```python block of the README."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in re.finditer(
            r"^```python\n(.*?)^```$", text, re.DOTALL | re.MULTILINE
        )
    ]


BLOCKS = python_blocks()


def test_readme_has_python_examples() -> None:
    """The extraction finds the README's examples (a broken fence finds none)."""
    assert len(BLOCKS) >= 3
    assert all(code.strip() for _, code in BLOCKS)


@pytest.mark.parametrize(
    "code", [pytest.param(code, id=f"README.md:{line}") for line, code in BLOCKS]
)
def test_readme_example_runs(tmp_path: Path, code: str) -> None:
    """Each example is a complete program: it exits 0 without a warning."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 (our own interpreter, the README's code)
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        timeout=TIMEOUT,
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr), done.stdout
    assert done.stdout
