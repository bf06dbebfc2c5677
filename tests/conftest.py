"""Shared fixtures: every anyio test runs on asyncio and on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``pytest.mark.anyio`` test on both backends, explicitly.

    Module-scoped, so that hypothesis ``@given`` tests can be ``async def``: the
    fixture is set up once per backend and module, not once per test (hypothesis
    refuses function-scoped fixtures, which its examples would share). A test that
    parametrizes ``anyio_backend`` directly still overrides it.
    """
    return str(request.param)
