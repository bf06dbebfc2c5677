"""Sphinx configuration for queuekeeper's documentation."""

from __future__ import annotations

import queuekeeper

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
        r"(anyio|trio|prometheus_client|coredis|typing|typing_extensions|collections|types)\..*",
    ),
    (r"py:.*", r"(queuekeeper(\._\w+)+\.)?(T|T_co|T_contra|R|Req|Res|Self)"),
    # What PoolObserver.attach receives: a pool's name and status(), as its
    # docstring says; a protocol of the observer module, not a public name.
    (r"py:class", r"(queuekeeper\._observer\.)?ObservedPool"),
    # What WorkerPool's queue= takes: a queue outside the process, such as
    # queuekeeper.redis.RedisQueue, as its docstring says; a private protocol.
    (r"py:class", r"(queuekeeper\._queue\.)?SharedQueue"),
    (r"py:.*", r"math\..*"),
    (
        r"py:class",
        r"(TaskStatus|TaskGroup|CancelScope|Event|CollectorRegistry|Mapping|Awaitable|Callable|PoolObserver|WorkerPool\[.*)",
    ),
    (r"py:exc", r"(Exception|anyio\..*)"),
]

html_theme = "alabaster"
# Wide enough for code of 88 columns (what ruff formats to) without a cut.
html_theme_options = {"page_width": "1200px", "sidebar_width": "240px"}
html_title = f"queuekeeper {release}"
