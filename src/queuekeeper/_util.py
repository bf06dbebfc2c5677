"""Small helpers shared by the other modules."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import socket
import sys
from abc import ABCMeta
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar, cast

from anyio import Event, current_time
from anyio.lowlevel import checkpoint

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "Backend",
    "NoPublicConstructor",
    "describe",
    "enable_ki_protection",
    "fixup_module_metadata",
    "ki_protected",
    "ki_unprotected",
    "process_name",
]

F = TypeVar("F", bound="Callable[..., Any]")

#: Ints at least this large (in size) are named by their length in messages.
_SHOWN_LIMIT: Final = 10**40


def describe(value: object) -> str:
    """Name *value* in an error message: its ``repr``, or a huge int's length.

    Python refuses to turn an int of more than 4,300 digits into a string, and a
    message of hundreds of digits helps nobody.
    """
    if isinstance(value, int) and abs(value) >= _SHOWN_LIMIT:
        size = abs(value)
        digits = int(size.bit_length() * math.log10(2)) + 1
        if 10 ** (digits - 1) > size:
            digits -= 1
        sign = "a negative" if value < 0 else "an"
        return f"{sign} int of {digits} digits"
    return repr(value)


def process_name() -> str:
    """This process, as status and metrics name it: ``"<host>:<pid>"``."""
    return f"{socket.gethostname()}:{os.getpid()}"


# Functions whose code Trio must not interrupt with KeyboardInterrupt (True), or
# must always let it interrupt (False): see enable_ki_protection().
_KI_PROTECTION: Final[list[tuple[Callable[..., Any], bool]]] = []
_ki_enabled = False


def ki_protected(function: F) -> F:
    """Mark *function* as a critical section that Ctrl-C must not cut in two.

    It mutates state that other tasks share (a channel's buffer and waiters, a
    pool's counters and tickets): a ``KeyboardInterrupt`` raised half-way would
    leave that state torn. Under Trio, :func:`enable_ki_protection` registers it
    with ``trio.lowlevel.enable_ki_protection``, and Trio then delivers Ctrl-C at
    the next checkpoint instead. It costs nothing: the function itself is returned.
    """
    _KI_PROTECTION.append((function, True))
    return function


def ki_unprotected(function: F) -> F:
    """Mark *function* as one that Ctrl-C may always interrupt.

    For the code that calls user code (a handler) from protected code: the user's
    code should stay as interruptible as Trio makes it by default.
    """
    _KI_PROTECTION.append((function, False))
    return function


def enable_ki_protection() -> None:
    """Register the marked functions with Trio, once, if Trio has been imported.

    Called where Trio may be about to run the library's code (a channel or a pool
    is created, a pool starts), so asyncio programs never import Trio for it.
    """
    global _ki_enabled  # noqa: PLW0603 (a once-only switch)
    if _ki_enabled:
        return
    trio = sys.modules.get("trio")
    if trio is None:
        return
    for function, protect in _KI_PROTECTION:
        if protect:
            trio.lowlevel.enable_ki_protection(function)
        else:
            trio.lowlevel.disable_ki_protection(function)
    _ki_enabled = True


class NoPublicConstructor(ABCMeta):
    """Metaclass that hides a class's constructor from users.

    ``Cls(...)`` raises :exc:`TypeError`; the library builds instances with
    ``Cls._create(...)``.
    """

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:  # noqa: ARG002
        msg = f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        raise TypeError(msg)

    def _create(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        return super().__call__(*args, **kwargs)


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Make the public names in *namespace* report *module_name* as their module.

    Tracebacks and reprs then show ``queuekeeper.WorkerPool`` rather than the
    private module the class lives in.
    """
    for name in namespace.get("__all__", ()):
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith(module_name + "._"):
            try:
                obj.__module__ = module_name
            except (AttributeError, TypeError):  # pragma: no cover - builtins
                continue


class Backend:
    """The running backend's checkpoint, clock and event, without anyio's dispatch.

    anyio's ``checkpoint()``, ``current_time()`` and ``Event()`` look the backend up
    (through sniffio) on every call. The pool does all three on every request:
    bound once when it starts, they cost 4,000-6,000 fewer instructions a request
    on Trio (a paired callgrind count of the end-to-end bench, 4-5 %). Outside a
    running event loop, anyio's own functions stand in.

    Attributes:
        checkpoint: Awaiting ``checkpoint()`` is a checkpoint.
        clock: The backend's clock (callable from any thread).
        event: An event class with ``set()``, ``is_set()`` and ``await wait()``.
    """

    __slots__ = ("checkpoint", "clock", "event")

    def __init__(self) -> None:
        self.checkpoint: Callable[[], Awaitable[object]] = checkpoint
        self.clock: Callable[[], float] = current_time
        self.event: Callable[[], Any] = Event

    def bind(self) -> None:
        """Find the running backend's own primitives (inside an event loop)."""
        trio = sys.modules.get("trio")
        if trio is not None and trio.lowlevel.in_trio_run():
            self.checkpoint = trio.lowlevel.checkpoint
            self.clock = cast(
                "Callable[[], float]", trio.lowlevel.current_clock().current_time
            )
            self.event = trio.Event
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover (another anyio backend)
            return
        self.checkpoint = functools.partial(asyncio.sleep, 0)
        self.clock = loop.time
        self.event = asyncio.Event
