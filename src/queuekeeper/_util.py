"""Small helpers shared by the other modules."""

from __future__ import annotations

from abc import ABCMeta
from typing import Any, NoReturn

__all__ = ["NoPublicConstructor", "fixup_module_metadata"]


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
