"""Render the JSON of ``queuekeeper bench --json`` as the tables of benchmarks.md.

Usage::

    queuekeeper bench --json bench.json
    python docs/render_bench.py bench.json > docs/_bench_results.md
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
    return str(result["median"]["violations"])


def render(bench: dict[str, Any]) -> str:
    """Return the Markdown for one bench run."""
    machine, config = bench["machine"], bench["config"]
    by_section: dict[str, list[dict[str, Any]]] = {}
    for result in bench["results"]:
        by_section.setdefault(result["section"], []).append(result)
    lines = [
        (
            f"One run of `queuekeeper bench` (tasks {config['tasks']:,}, repeat"
            f" {config['repeat']}) on a shared {machine['cpus']}-core machine, Python"
            f" {machine['python']}, anyio {machine['anyio']}, trio {machine['trio']}."
            " Absolute figures vary from machine to machine and run to run; the ratios"
            " travel better."
        ),
        "",
        "**Single task**",
        "",
        (
            "| implementation | ops/s | x heapq | enqueue µs avg / p99"
            " | dequeue µs avg / p99 | violations |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in by_section.get("single", []):
        m = result["median"]
        lines.append(
            f"| {_name(result)} | {m['ops_per_s']:,.0f} | {m['ratio_to_heapq']:.2f}"
            f" | {m['enqueue_us_avg']:.2f} / {m['enqueue_us_p99']:.2f}"
            f" | {m['dequeue_us_avg']:.2f} / {m['dequeue_us_p99']:.2f}"
            f" | {_violations(result)} |"
        )
    lines += [
        "",
        "**Concurrent, 5 + 5**",
        "",
        (
            "| implementation | ops/s | x heapq | queue latency p50 µs | p99 µs"
            " | FIFO violations |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in by_section.get("concurrent", []):
        m = result["median"]
        lines.append(
            f"| {_name(result)} | {m['ops_per_s']:,.0f} | {m['ratio_to_heapq']:.2f}"
            f" | {m['latency_us_p50']:,.1f} | {m['latency_us_p99']:,.1f}"
            f" | {_violations(result)} |"
        )
    lines += [
        "",
        "**End to end, 5 workers**",
        "",
        "| implementation | requests/s | x heapq | overhead µs per request |",
        "|---|---:|---:|---:|",
    ]
    for result in by_section.get("pool", []):
        m = result["median"]
        lines.append(
            f"| {_name(result)} | {m['requests_per_s']:,.0f}"
            f" | {m['ratio_to_heapq']:.2f} | {m['overhead_us']:.2f} |"
        )
    lines += [
        "",
        (
            "**Targets** (medians of the ratios of runs paired in time: the samples"
            " of a round; for the concurrent runs, the runs of a turn)"
        ),
        "",
        "| target | ratio | bound | |",
        "|---|---:|---:|---|",
    ]
    for target in bench["targets"]:
        verdict = "met" if target["passed"] else "missed"
        lines.append(
            f"| {target['target']} | {target['ratio']:.2f}"
            f" | {_SIGNS[target['mode']]} {target['bound']:.2f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
