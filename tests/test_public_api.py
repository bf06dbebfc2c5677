"""The public surface: exactly the names API.md promises, tidy and typed."""

from __future__ import annotations

import inspect
from importlib.resources import files

import pytest

import queuekeeper

CONTRACT = {
    "Backpressure",
    "ChannelStatistics",
    "PoolClosed",
    "PoolStatus",
    "Priority",
    "PriorityReceiveChannel",
    "PrioritySendChannel",
    "PrometheusMetrics",
    "QueueFull",
    "QueueKeeperError",
    "QueueTimeout",
    "RequestCancelled",
    "RequestShed",
    "RequestTimeout",
    "Ticket",
    "TicketState",
    "WorkerHealth",
    "WorkerPool",
    "create_priority_channel",
}


def test_all_lists_the_contract_and_nothing_private() -> None:
    """__all__ holds every contract name, each importable, none private."""
    assert CONTRACT <= set(queuekeeper.__all__)
    assert len(queuekeeper.__all__) == len(set(queuekeeper.__all__))
    for name in queuekeeper.__all__:
        assert not name.startswith("_")
        assert getattr(queuekeeper, name) is not None


def test_no_public_name_leaks_outside_all() -> None:
    """Every public class or function the package exposes is in __all__."""
    leaked = {
        name
        for name, value in vars(queuekeeper).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and name not in queuekeeper.__all__
    }
    assert set() == leaked


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_public_names_report_the_package_as_their_module(name: str) -> None:
    """Tracebacks and reprs show queuekeeper.Name, not a private module."""
    assert "queuekeeper" == getattr(queuekeeper, name).__module__


def test_error_hierarchy() -> None:
    """All errors are QueueKeeperErrors; the two timeouts are also TimeoutErrors."""
    for name in ("QueueFull", "PoolClosed", "RequestCancelled", "RequestShed"):
        assert issubclass(getattr(queuekeeper, name), queuekeeper.QueueKeeperError)
    for name in ("QueueTimeout", "RequestTimeout"):
        error = getattr(queuekeeper, name)
        assert issubclass(error, queuekeeper.QueueKeeperError)
        assert issubclass(error, TimeoutError)
    full = queuekeeper.QueueFull(10, queuekeeper.Priority.LOW)
    assert (10, queuekeeper.Priority.LOW) == (full.max_size, full.priority)


def test_package_ships_type_information() -> None:
    """py.typed marks the package as typed."""
    assert files("queuekeeper").joinpath("py.typed").is_file()


@pytest.mark.parametrize("name", queuekeeper.__all__)
def test_every_public_name_has_its_own_docstring(name: str) -> None:
    """Each public name documents itself (not a docstring inherited from a base)."""
    obj = getattr(queuekeeper, name)
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    assert doc, name
    assert doc.strip(), name
