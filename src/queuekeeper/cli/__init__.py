"""The ``queuekeeper`` command: ``run`` and ``bench`` (extra ``queuekeeper[cli]``).

Tools for a person at a terminal, kept apart from the library: importing
``queuekeeper`` imports none of this, nor what it needs (rich, and trio and
prometheus_client for some options).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

#: What ``main`` returns when an extra it needs is not installed.
MISSING_EXTRA: Final = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``queuekeeper`` command; return its exit status.

    Without the packages of the ``cli`` extra it prints one line naming the extra
    to install, and returns 2.
    """
    try:
        from ._app import main as run_command  # noqa: PLC0415 (needs rich)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "rich":
            raise
        print(  # noqa: T201
            "queuekeeper: the command line needs rich: pip install 'queuekeeper[cli]'",
            file=sys.stderr,
        )
        return MISSING_EXTRA
    return run_command(argv)
