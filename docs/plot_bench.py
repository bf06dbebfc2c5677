"""Draw the charts of benchmarks.md from the figures in its tables.

Usage (needs matplotlib: ``pip install 'queuekeeper[plot]'``)::

    python docs/plot_bench.py

It reads the tables of ``docs/_bench_results.md`` (written by ``render_bench.py``)
and the Redis table of ``docs/benchmarks.md``, and writes one SVG per table into
``docs/_static/bench/``, the same bytes for the same figures. Run it whenever those
tables change.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

DOCS = Path(__file__).parent
OUT = DOCS / "_static" / "bench"

#: The file each table of _bench_results.md is drawn into, by its title's start.
CHARTS = {
    "**Single task": "single",
    "**Concurrent": "concurrent",
    "**End to end": "pool",
    "**Targets": "targets",
}

QUEUEKEEPER = "#2962ff"  # queuekeeper's own rows
OTHER = "#9e9e9e"  # everything it is compared with
MET = "#2e7d32"
MISSED = "#c62828"
ASYNCIO = "#26a69a"
TRIO = "#7e57c2"
WIDTH = 7.5  # inches; the page shows it at the text column's width


def tables(text: str) -> dict[str, list[list[str]]]:
    """The body rows of each Markdown table in *text*, by the title above it.

    A title is the last paragraph line before the table that starts with ``**``
    or ``#``; the header row and the alignment row are left out.
    """
    found: dict[str, list[list[str]]] = {}
    title = ""
    rows: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("|"):
            if rows is None:
                rows = found[title] = []
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        rows = None
        if line.startswith(("**", "#")):
            title = line
    return {title: body[2:] for title, body in found.items()}


def number(cell: str) -> float:
    """``"4,188,011"`` -> 4188011.0; ``"17.6x"`` -> 17.6; ``"≤ 1.25"`` -> 1.25."""
    match = re.search(r"-?[\d,]*\.?\d+", cell)
    if match is None:
        msg = f"no number in table cell {cell!r}"
        raise ValueError(msg)
    return float(match.group().replace(",", ""))


def label(cell: str, prefix: str = "") -> str:
    """A row's name without its backquotes and the *prefix* every row shares."""
    name = cell.strip("`")
    return name.removeprefix(prefix)


def colour(name: str) -> str:
    """The colour of a row: queuekeeper's own, or grey for the rest."""
    return QUEUEKEEPER if "queuekeeper" in name else OTHER


def setup() -> Any:  # noqa: ANN401 (matplotlib.pyplot)
    """Import pyplot for SVG output, with the charts' common style."""
    import matplotlib as mpl  # noqa: PLC0415 (optional)

    mpl.use("svg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update(
        {
            "svg.hashsalt": "queuekeeper",  # stable ids: same figures, same file
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "figure.facecolor": "white",
        }
    )
    return plt


def bars(
    axes: Any,  # noqa: ANN401
    names: Sequence[str],
    values: Sequence[float],
    *,
    fmt: str,
    colours: Iterable[str] | None = None,
) -> None:
    """Horizontal bars, first row on top, each with its value at its end."""
    shown = list(colours) if colours is not None else [colour(n) for n in names]
    drawn = axes.barh(names, values, color=shown, height=0.7)
    axes.invert_yaxis()
    axes.bar_label(drawn, labels=[fmt.format(v) for v in values], padding=3)
    axes.set_xlim(0, max(values) * 1.22)
    axes.tick_params(axis="y", length=0)
    axes.xaxis.set_major_formatter(_thousands())


def _thousands() -> Any:  # noqa: ANN401
    """An axis formatter: 500k, 1.25M."""
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    def fmt(value: float, _position: int) -> str:
        if value >= 1_000_000:  # noqa: PLR2004
            return f"{value / 1_000_000:g}M"
        if value >= 1_000:  # noqa: PLR2004
            return f"{value / 1_000:g}k"
        return f"{value:g}"

    return FuncFormatter(fmt)


def save(plt: Any, figure: Any, name: str) -> Path:  # noqa: ANN401
    """Write *figure* as ``_static/bench/<name>.svg``, without a date in it."""
    figure.tight_layout()
    path = OUT / f"{name}.svg"
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return path


def single(plt: Any, rows: list[list[str]]) -> Path:  # noqa: ANN401
    """Single task: operations per second per implementation."""
    names = [label(r[0]) for r in rows]
    figure, axes = plt.subplots(figsize=(WIDTH, 0.32 * len(rows) + 1.0))
    bars(axes, names, [number(r[1]) for r in rows], fmt="{:,.0f}")
    axes.set_title("Single task: operations per second (higher is better)")
    return save(plt, figure, "single")


def concurrent(plt: Any, rows: list[list[str]]) -> Path:  # noqa: ANN401
    """Concurrent, 5 + 5: throughput, and queue latency from p50 to p99."""
    names = [label(r[0], "concurrent-") for r in rows]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(WIDTH, 0.34 * len(rows) + 1.3), sharey=True
    )
    bars(left, names, [number(r[1]) for r in rows], fmt="{:,.0f}")
    left.set_title("throughput, ops/s", fontsize=9)
    p50 = [number(r[3]) for r in rows]
    p99 = [number(r[4]) for r in rows]
    y = range(len(rows))
    right.hlines(y, p50, p99, color=[colour(n) for n in names], linewidth=2)
    right.plot(p50, y, "o", color="black", markersize=4, label="p50")
    right.plot(p99, y, "|", color="black", markersize=9, label="p99")
    right.set_xscale("log")
    right.set_title("queue latency p50 to p99, µs (log)", fontsize=9)
    right.legend(loc="lower right", frameon=False)
    right.tick_params(axis="y", length=0)
    right.xaxis.set_major_formatter(_thousands())
    figure.suptitle(
        "Concurrent, 5 + 5: throughput (higher is better), latency (lower is better)",
        fontsize=10,
        fontweight="bold",
    )
    return save(plt, figure, "concurrent")


def pool(plt: Any, rows: list[list[str]]) -> Path:  # noqa: ANN401
    """End to end: requests per second per pool."""
    names = [label(r[0], "pool-") for r in rows]
    figure, axes = plt.subplots(figsize=(WIDTH, 0.32 * len(rows) + 1.0))
    bars(axes, names, [number(r[1]) for r in rows], fmt="{:,.0f}")
    axes.set_title("End to end, 5 workers: requests per second (higher is better)")
    return save(plt, figure, "pool")


def targets(plt: Any, rows: list[list[str]]) -> Path:  # noqa: ANN401
    """Each target's ratio beside its bound, green where met, red where missed."""
    names = [textwrap.fill(r[0], 44) for r in rows]
    ratios = [number(r[1]) for r in rows]
    bounds = [number(r[2]) for r in rows]
    met = [r[3] == "met" for r in rows]
    # A target measured with its floor says so: "missed (floor: ..., 1.87)".
    floors = {
        row: float(match.group(1))
        for row, r in enumerate(rows)
        if (match := re.search(r"floor: .*, ([\d.]+)\)$", r[3]))
    }
    figure, axes = plt.subplots(figsize=(WIDTH, 0.42 * len(rows) + 1.0))
    y = list(range(len(rows)))
    axes.scatter(bounds, y, marker="|", s=220, color="black", label="bound", zorder=2)
    if floors:
        axes.scatter(
            list(floors.values()),
            list(floors),
            marker="D",
            s=30,
            facecolors="none",
            edgecolors="#707070",
            label="floor (see below)",
            zorder=2,
        )
    axes.scatter(
        ratios,
        y,
        s=36,
        color=[MET if ok else MISSED for ok in met],
        label="ratio (green: met, red: missed)",
        zorder=3,
    )
    for row, (ratio, bound, cell) in enumerate(zip(ratios, bounds, rows, strict=True)):
        sign = cell[2].split()[0]
        axes.annotate(
            f"{ratio:.2f} ({sign} {bound:.2f})",
            (max(ratio, bound), row),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.set_yticks(y, names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(ratios + bounds + list(floors.values())) * 1.45)
    axes.tick_params(axis="y", length=0)
    axes.grid(axis="x", color="#e0e0e0", zorder=0)
    axes.set_title("Targets: each ratio against its bound")
    axes.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.06),
        ncols=3 if floors else 2,
        frameon=False,
        fontsize=8,
    )
    return save(plt, figure, "targets")


def redis(plt: Any, rows: list[list[str]]) -> Path:  # noqa: ANN401
    """On Redis: each figure per second on asyncio and on Trio (not the ratios)."""
    import numpy as np  # noqa: PLC0415 (comes with matplotlib)

    rows = [r for r in rows if "/" not in r[0]]  # the ratios are not figures per second
    names = [textwrap.fill(label(r[0]).replace("`", ""), 34) for r in rows]
    on_asyncio = [number(r[1]) for r in rows]
    on_trio = [number(r[2]) for r in rows]
    y = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(WIDTH, 0.55 * len(rows) + 1.0))
    height = 0.38
    for offset, values, name, tint in (
        (-height / 2, on_asyncio, "asyncio", ASYNCIO),
        (height / 2, on_trio, "Trio", TRIO),
    ):
        drawn = axes.barh(y + offset, values, height, color=tint, label=name)
        axes.bar_label(drawn, labels=[f"{v:,.0f}" for v in values], padding=3)
    axes.set_yticks(y, names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(on_asyncio + on_trio) * 1.18)
    axes.tick_params(axis="y", length=0)
    axes.xaxis.set_major_formatter(_thousands())
    axes.set_title("On Redis: per second (higher is better)")
    axes.legend(loc="lower right", frameon=False)
    return save(plt, figure, "redis")


def main() -> None:
    """Draw every chart; name the files written."""
    plt = setup()
    OUT.mkdir(parents=True, exist_ok=True)
    results = tables((DOCS / "_bench_results.md").read_text(encoding="utf-8"))
    drawers = {
        "single": single,
        "concurrent": concurrent,
        "pool": pool,
        "targets": targets,
    }
    written = []
    for start, name in CHARTS.items():
        rows = [body for title, body in results.items() if title.startswith(start)]
        if len(rows) != 1:
            msg = f"_bench_results.md: expected one table titled {start}…**"
            raise SystemExit(msg)
        written.append(drawers[name](plt, rows[0]))
    page = tables((DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    on_redis = [body for title, body in page.items() if title.startswith("## On Redis")]
    if len(on_redis) != 1:
        msg = "benchmarks.md: expected one table under '## On Redis'"
        raise SystemExit(msg)
    written.append(redis(plt, on_redis[0]))
    for path in written:
        sys.stdout.write(f"{path.relative_to(DOCS.parent)}\n")


if __name__ == "__main__":
    main()
