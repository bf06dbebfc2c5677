"""Sphinx configuration for queuekeeper's documentation."""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

import attrs
from sphinx.util import logging

import queuekeeper
from queuekeeper._util import NoPublicConstructor

if TYPE_CHECKING:
    from sphinx.application import Sphinx

project = "queuekeeper"
author = "The queuekeeper developers"
copyright = "2026, The queuekeeper developers"
release = queuekeeper.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_bench_results.md"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Names from other projects: no network here for intersphinx, so they stay plain.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(anyio|trio|prometheus_client|coredis|typing|typing_extensions|collections|types|random)\..*",
    ),
    (r"py:.*", r"(queuekeeper(\._\w+)+\.)?(T|T_co|T_contra|R|Req|Res|Self)"),
    # What PoolObserver.attach receives: a pool's name and status(), as its
    # docstring says; a protocol of the observer module, not a public name.
    (r"py:class", r"(queuekeeper\._observer\.)?ObservedPool"),
    # What WorkerPool's queue= takes: a queue outside the process, such as
    # queuekeeper.redis.RedisQueue, as its docstring says; a private protocol.
    (r"py:class", r"(queuekeeper\._queue\.)?SharedQueue"),
    (r"py:.*", r"math\..*"),
    # WorkerPool.dead_letters' type, anyio's (annotated unqualified).
    (r"py:class", r"ObjectReceiveStream"),
    (
        r"py:class",
        r"(TaskStatus|TaskGroup|CancelScope|Event|CollectorRegistry|Mapping|Awaitable|Callable|WorkerPool\[.*|ObjectReceiveStream)",
    ),
    (r"py:exc", r"(Exception|anyio\..*)"),
]

html_theme = "furo"
html_title = f"queuekeeper {release}"
html_theme_options = {"navigation_with_keys": True}


class _Shown:
    """A default shown in a signature as the code that makes it (``dict()``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _attrs_signature(cls: type) -> str:
    """The ``__init__`` arguments of an attrs class, with defaults as values.

    autodoc_preserve_defaults reads defaults from the source of ``__init__``; attrs
    generates that source, where a default reads ``attr_dict['name'].default``.
    """
    parameters = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        default: object = field.default
        if default is attrs.NOTHING:
            default = inspect.Parameter.empty
        elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = _Shown(f"{default.factory.__name__}()")
        kind = (
            inspect.Parameter.KEYWORD_ONLY
            if field.kw_only
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        parameters.append(
            inspect.Parameter(field.alias or field.name, kind, default=default)
        )
    return str(inspect.Signature(parameters))


def _class_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,  # noqa: ANN401 (whatever autodoc documents)
    options: Any,  # noqa: ANN401, ARG001
    signature: str | None,  # noqa: ARG001
    return_annotation: str | None,  # noqa: ARG001
) -> tuple[str, str | None] | None:
    """Show the signature a user can call, or none where there is nothing to call.

    Classes without a public constructor (channel endpoints, tickets) would show
    their metaclass's ``(*args, **kwargs) -> NoReturn``, and a protocol its
    ``(*args, **kwargs)``: neither is made by the user, so they get no signature,
    and no parameters in their description either. An attrs class shows its
    fields' defaults as values.
    """
    if what != "class":
        return None
    if isinstance(obj, NoPublicConstructor) or getattr(obj, "_is_protocol", False):
        app.env.current_document.autodoc_annotations.pop(name, None)
        return "", None
    if attrs.has(obj):
        # Its attributes are listed with their types: no parameter list too.
        app.env.current_document.autodoc_annotations.pop(name, None)
        return _attrs_signature(obj), None
    return None


# Private sentinels a signature shows by name, and what each stands for.
_SENTINELS = {"=_UNSET": "=<the pool's drain_timeout>"}


def _sentinel_defaults(
    app: Sphinx,  # noqa: ARG001
    what: str,
    name: str,
    obj: Any,  # noqa: ANN401, ARG001 (whatever autodoc documents)
    options: Any,  # noqa: ANN401, ARG001
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """Show what a sentinel default means (``shutdown(timeout=...)``), not its name.

    autodoc_preserve_defaults shows a default as its source reads, and a
    sentinel's name is private.
    """
    if what not in {"method", "function"} or signature is None:
        return None
    shown = signature
    for source, meaning in _SENTINELS.items():
        shown = shown.replace(source, meaning)
    if re.search(r"=_[A-Za-z]", shown):  # a private default not in _SENTINELS
        logging.getLogger(__name__).warning(
            "%s shows a private default: %s (add it to _SENTINELS)", name, shown
        )
    return (shown, return_annotation) if shown != signature else None


def setup(app: Sphinx) -> None:
    """Hook the signature fixes in ahead of autodoc's own listeners."""
    app.connect("autodoc-process-signature", _class_signature, priority=400)
    app.connect("autodoc-process-signature", _sentinel_defaults, priority=400)
