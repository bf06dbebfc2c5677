"""The pool layer: :class:`WorkerPool` and its parts, each in its own module.

``_pool`` holds the lifecycle and the wiring; ``_admission``, ``_deadlines``,
``_workers`` and ``_accounting`` the parts; ``_ticket`` what ``submit`` returns;
``_checks`` the validation of what the pool is given.
"""

from __future__ import annotations

from ._pool import WorkerPool as WorkerPool
from ._scaling import Autoscale as Autoscale
from ._ticket import Ticket as Ticket
from ._ticket import TicketOwner as TicketOwner

__all__ = ["Autoscale", "Ticket", "TicketOwner", "WorkerPool"]
