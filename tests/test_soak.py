"""The short variant of the chaos soak (``nox -s soak`` runs the long one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from soak import run_soak


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_short_soak_holds_every_invariant(backend: str) -> None:
    """20,000 chaotic requests: all tickets final once, counters add up, no leaks."""
    totals, summary = run_soak(20_000, segment=5_000, seed=7, backend=backend)
    assert [] == totals.problems, summary
    assert 20_000 == totals.offered
    assert totals.submitted == sum(totals.outcomes.values())
    for outcome in ("succeeded", "failed", "timed_out", "cancelled", "shed"):
        assert totals.outcomes.get(outcome, 0) > 0, (outcome, summary)
