"""The public surface: exactly the names API.md promises, tidy and typed."""

from __future__ import annotations

import enum
import inspect
from importlib.resources import files

import anyio.abc
import attrs
import pytest
from prometheus_client import CollectorRegistry

import queuekeeper

#: Every public name API.md documents, and what it is.
CONTRACT = {
    "Backpressure": "enum",
    "ChannelStatistics": "snapshot",
    "PoolClosed": "error",
    "PoolObserver": "protocol",
    "PoolStatus": "snapshot",
    "Priority": "enum",
    "PriorityReceiveChannel": "endpoint",
    "PrioritySendChannel": "endpoint",
    "PrometheusMetrics": "class",
    "QueueFull": "error",
    "QueueKeeperError": "error",
    "QueueTimeout": "error",
    "RequestCancelled": "error",
    "RequestShed": "error",
    "RequestTimeout": "error",
    "Ticket": "handle",
    "TicketState": "enum",
    "WorkerHealth": "snapshot",
    "WorkerPool": "class",
    "create_priority_channel": "factory",
    "Autoscale": "snapshot",  # a setting: frozen attrs too
    "RateLimit": "snapshot",
    "StrictPriority": "snapshot",
    "WeightedFair": "snapshot",
    "Retry": "snapshot",
    "DeadLetter": "snapshot",
}


def test_all_is_exactly_the_documented_names() -> None:
    """__all__ holds the names API.md promises, each once, and nothing else."""
    assert sorted(CONTRACT) == sorted(queuekeeper.__all__)
    assert len(queuekeeper.__all__) == len(set(queuekeeper.__all__))


@pytest.mark.parametrize(("name", "kind"), sorted(CONTRACT.items()))
def test_each_public_name_is_what_the_contract_says(name: str, kind: str) -> None:
    """Errors are QueueKeeperErrors, snapshots frozen attrs classes, and so on."""
    obj = getattr(queuekeeper, name)
    assert isinstance(obj, type)
    if kind == "error":
        assert issubclass(obj, queuekeeper.QueueKeeperError)
    elif kind == "enum":
        assert issubclass(obj, enum.Enum)
    elif kind == "snapshot":
        assert attrs.has(obj)
        names = [field.name for field in attrs.fields(obj)]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj.__setattr__(object.__new__(obj), names[0] if names else "x", 1)
    elif kind in {"endpoint", "handle"}:
        with pytest.raises(TypeError, match="no public constructor"):
            obj()
    elif kind == "protocol":
        assert getattr(obj, "_is_protocol", False)
        metrics = queuekeeper.PrometheusMetrics(CollectorRegistry())
        assert isinstance(metrics, obj)
        assert not isinstance(object(), obj)
    elif kind == "factory":
        send, receive = obj()
        assert isinstance(send, anyio.abc.ObjectSendStream)
        assert isinstance(receive, anyio.abc.ObjectReceiveStream)
    else:
        assert "class" == kind
        assert not issubclass(obj, BaseException)


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
