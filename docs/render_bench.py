"""Render the JSON of ``queuekeeper bench --json`` as the tables of benchmarks.md.

Usage::

    queuekeeper bench --json bench.json
    python docs/render_bench.py bench.json > docs/_bench_results.md
    python docs/plot_bench.py

Each table comes with its chart, ``_static/bench/<section>.svg``, which
``plot_bench.py`` draws from the figures of the tables written here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_SIGNS = {"speed": "≥", "cost": "≤", "cost<": "<", "p99": "≤"}


def _name(result: dict[str, Any]) -> str:
    return f"`{result['name']}`"


def _violations(result: dict[str, Any]) -> str:
    if result["kind"] == "fifo":
        return "n/a (FIFO)"
    if result["kind"] == "fair":  # weighted sharing: no strict priority order
        return "n/a (weighted)"
    return str(result["median"]["violations"])


def _floor(target: dict[str, Any]) -> str:
    """The floor under a target, measured in the same run, if it has one."""
    if "floor" not in target:
        return ""
    return f" (floor: `{target['floor_subject']}`, {target['floor']:.2f})"


def _table(
    title: str,
    chart: str,
    headers: list[str],
    rows: list[list[str]],
    *,
    text_last: bool = False,
) -> list[str]:
    """Return the lines of a titled Markdown table, with its chart above it.

    Figures are right-aligned; the first column, and the last if *text_last*, left.
    """
    aligns = ["---", *("---:" for _ in headers[1:])]
    if text_last:
        aligns[-1] = "---"
    alt = title.split("**")[1]
    return [
        "",
        title,
        "",
        f"![{alt}, as a chart](_static/bench/{chart}.svg)",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(aligns) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _single(result: dict[str, Any]) -> list[str]:
    m = result["median"]
    return [
        _name(result),
        f"{m['ops_per_s']:,.0f}",
        f"{m['ratio_to_heapq']:.2f}",
        f"{m['enqueue_us_avg']:.2f} / {m['enqueue_us_p99']:.2f}",
        f"{m['dequeue_us_avg']:.2f} / {m['dequeue_us_p99']:.2f}",
        _violations(result),
    ]


def _concurrent(result: dict[str, Any]) -> list[str]:
    m = result["median"]
    return [
        _name(result),
        f"{m['ops_per_s']:,.0f}",
        f"{m['ratio_to_heapq']:.2f}",
        f"{m['latency_us_p50']:,.1f}",
        f"{m['latency_us_p99']:,.1f}",
        _violations(result),
    ]


def _pool(result: dict[str, Any]) -> list[str]:
    m = result["median"]
    return [
        _name(result),
        f"{m['requests_per_s']:,.0f}",
        f"{m['ratio_to_heapq']:.2f}",
        f"{m['overhead_us']:.2f}",
    ]


# Per section: its title, column headers and how a result becomes a row.
_SECTIONS = {
    "single": (
        "**Single task**",
        [
            "implementation",
            "ops/s",
            "x heapq",
            "enqueue µs avg / p99",
            "dequeue µs avg / p99",
            "violations",
        ],
        _single,
    ),
    "concurrent": (
        "**Concurrent, 5 + 5**",
        [
            "implementation",
            "ops/s",
            "x heapq",
            "queue latency p50 µs",
            "p99 µs",
            "FIFO violations",
        ],
        _concurrent,
    ),
    "pool": (
        "**End to end, 5 workers**",
        ["implementation", "requests/s", "x heapq", "overhead µs per request"],
        _pool,
    ),
}


def render(bench: dict[str, Any]) -> str:
    """Return the Markdown for one bench run."""
    machine, config = bench["machine"], bench["config"]
    intro = (
        f"One run of `queuekeeper bench` (tasks {config['tasks']:,}, repeat"
        f" {config['repeat']}) on a shared {machine['cpus']}-core machine, Python"
        f" {machine['python']}, anyio {machine['anyio']}, trio {machine['trio']}."
        " Absolute figures vary from machine to machine and run to run; the ratios"
        " travel better."
    )
    lines = [intro]
    for section, (title, headers, row) in _SECTIONS.items():
        results = [r for r in bench["results"] if r["section"] == section]
        lines += _table(title, section, headers, [row(r) for r in results])
    targets = [
        [
            target["target"],
            f"{target['ratio']:.2f}",
            f"{_SIGNS[target['mode']]} {target['bound']:.2f}",
            ("met" if target["passed"] else "missed") + _floor(target),
        ]
        for target in bench["targets"]
    ]
    title = (
        "**Targets** (medians of the ratios of runs paired in time: the samples"
        " of a round; for the concurrent runs, the runs of a turn)"
    )
    headers = ["target", "ratio", "bound", "verdict"]
    lines += _table(title, "targets", headers, targets, text_last=True)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
