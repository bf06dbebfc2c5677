"""``queuekeeper bench``: it runs, its JSON holds every figure, its checks hold."""

from __future__ import annotations

import collections
import gc
import io
import json
import math
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from queuekeeper.cli._app import main
from queuekeeper.cli._bench import (
    _IMPLEMENTATIONS,
    BenchConfig,
    _bulk_pass,
    _concurrent_sample,
    _Quiet,
    _round_groups,
    _round_order,
    _targets,
    _timed_pass,
    correctness_verdict,
    implementation_names,
    latency_verdict,
    plot,
    run_bench,
    throughput_verdict,
)

SECTIONS = {"single", "concurrent", "pool"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One full bench run with --tasks 500 --repeat 1, through the command line."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    completed = subprocess.run(  # noqa: S603 (our own command)
        [
            sys.executable,
            "-m",
            "queuekeeper",
            "bench",
            "--tasks",
            "500",
            "--repeat",
            "1",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == completed.returncode, completed.stderr
    return json.loads(path.read_text(encoding="utf-8")), completed.stdout


def test_every_implementation_runs_and_is_reported(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """Every registered implementation has a result, and none failed."""
    results, _ = small_run
    names = [r["name"] for r in results["results"]]
    assert list(implementation_names()) == names
    for result in results["results"]:
        assert result["section"] in SECTIONS
        assert result["kind"] in {"priority", "fifo", "fair"}
        assert 1 == len(result["samples"])
        assert 0 == result["median"]["errors"], result


def test_json_schema(small_run: tuple[dict[str, Any], str]) -> None:
    """The JSON holds machine info, the configuration, raw samples and targets."""
    results, _ = small_run
    assert {"machine", "config", "results", "targets"} == set(results)
    machine = results["machine"]
    assert {"python", "platform", "cpus", "anyio", "trio", "queuekeeper"} <= set(
        machine
    )
    assert 500 == results["config"]["tasks"]
    assert 2500 == results["config"]["requests"]
    assert 1 == results["config"]["repeat"]
    common = {"ns_per_op", "heapq_ns_per_op", "ratio_to_heapq", "errors"}
    per_section = {
        "single": {
            "ops_per_s",
            "enqueue_us_avg",
            "enqueue_us_p99",
            "dequeue_us_avg",
            "dequeue_us_p99",
            "memory_bytes",
            "violations",
        },
        "concurrent": {
            "ops_per_s",
            "latency_us_p50",
            "latency_us_p99",
            "violations",
            "violations_per_level",
        },
        "pool": {"requests_per_s", "overhead_us"},
    }
    turn_keys = {"ns_per_op", "latency_us_p50", "latency_us_p99"}
    for result in results["results"]:
        concurrent = result["section"] == "concurrent"
        expected = common | per_section[result["section"]]
        assert expected == set(result["median"]), result
        for sample in result["samples"]:
            # A concurrent sample is the median of its runs, each kept in turns.
            assert expected | ({"turns"} if concurrent else set()) == set(sample)
            ratio = sample["ns_per_op"] / sample["heapq_ns_per_op"]
            assert math.isclose(sample["ratio_to_heapq"], ratio)
            if concurrent:
                assert 5 == len(sample["turns"])
                assert all(turn_keys == set(turn) for turn in sample["turns"])
                times = sorted(turn["ns_per_op"] for turn in sample["turns"])
                assert times[0] <= sample["ns_per_op"] <= times[-1]
        for sample in [*result["samples"], result["median"]]:
            assert sample["ns_per_op"] > 0
            assert sample["heapq_ns_per_op"] > 0
    for target in results["targets"]:
        keys = {
            "target",
            "subject",
            "reference",
            "measure",
            "mode",
            "pairs",
            "ratio",
            "bound",
            "passed",
        }
        if target["subject"].startswith("queuekeeper-aging@"):
            # The aging target comes with its floor, measured in the same rounds.
            keys |= {"floor", "floor_subject"}
            backend = target["subject"].partition("@")[2]
            assert f"anyio-stream+clock@{backend}" == target["floor_subject"]
            assert target["floor"] > 0
        assert keys == set(target)
        assert isinstance(target["passed"], bool)
        # Samples of a round pair up; concurrent runs, 5 turns a round, by turn.
        concurrent = target["subject"].startswith("concurrent-")
        assert (5 if concurrent else 1) == target["pairs"]
    assert 16 == len(results["targets"])


def test_the_command_line_page_lists_every_implementation_in_order() -> None:
    """docs/cli.md names what ``--only`` accepts, all of it, as the bench runs it."""
    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text("utf-8")
    listed = page.split("Implementation names, in the order they run: ")[1]
    listed = listed.split(". An unknown name")[0]
    assert list(implementation_names()) == re.findall(r"`([^`]+)`", listed)


def test_the_report_prints_the_floor_under_the_aging_target(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """Below each aging target, the stream with only aging's clock reads."""
    results, output = small_run
    for target in results["targets"]:
        if "floor" in target:
            line = f"{target['floor_subject']}, its floor:"
            assert re.search(
                rf"^ +{re.escape(line)} +{target['floor']:.2f}$", output, re.MULTILINE
            )


def test_a_clocked_pass_reads_the_clock_at_each_enqueue_and_dequeue() -> None:
    """The floor's pass: a reading goes in with each entry, one is read per dequeue."""
    reads: list[float] = []

    def clock() -> float:
        reads.append(float(len(reads)))
        return reads[-1]

    entries = [(level, seq, (level, 0, seq)) for seq, level in enumerate([3, 1, 4, 1])]
    queue: collections.deque[tuple[float, Any]] = collections.deque()
    _, order, _ = _bulk_pass(queue.append, queue.popleft, entries, clock=clock)
    assert [(3, 0), (1, 1), (4, 2), (1, 3)] == order  # FIFO, unwrapped
    assert 2 * len(entries) == len(reads)
    reads.clear()
    put: list[tuple[float, Any]] = []

    def enqueue(entry: tuple[float, Any]) -> None:
        put.append(entry)
        queue.append(entry)

    times, _ = _timed_pass(enqueue, queue.popleft, entries, clock=clock)
    assert 4 == len(times)
    assert 2 * len(entries) == len(reads)
    assert [(0.0, entries[0]), (1.0, entries[1])] == put[:2]
    assert not queue


def test_priority_implementations_show_no_violations(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """Every priority queue dequeues in (priority, FIFO) order: 0 violations."""
    results, output = small_run
    checked = [
        r
        for r in results["results"]
        if r["kind"] == "priority" and r["section"] != "pool"
    ]
    assert 16 == len(checked)  # 8 single-task, 2 + 6 concurrent
    for result in checked:
        assert 0 == result["median"]["violations"], result["name"]
    for result in results["results"]:
        if result["section"] == "concurrent":
            assert {"CRITICAL", "HIGH", "NORMAL", "LOW"} == set(
                result["median"]["violations_per_level"]
            )
    assert "FAIL " not in output
    assert "CAUTION" not in output


def test_fifo_reference_is_out_of_priority_order(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """The check is live: the FIFO stream, read as a priority queue, fails it."""
    results, _ = small_run
    stream = next(r for r in results["results"] if r["name"] == "anyio-stream@trio")
    assert stream["median"]["violations"] > 0


def test_output_follows_the_comparison_layout(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """Sections in the order readers of the comparison document expect."""
    _, output = small_run
    headings = [
        "Dependency Check:",
        "Configuration:",
        "RUNNING BENCHMARKS",
        "Test 1: Single-task Performance (Baseline)",
        "Test 2: Concurrent, 5 producers + 5 consumers",
        "Test 3: End to end",
        "COMPARISON: Priority Queue Implementations",
        "Throughput Ranking",
        "Latency Comparison",
        "Priority Order Correctness:",
        "TARGETS",
    ]
    positions = [output.index(heading) for heading in headings]
    assert sorted(positions) == positions
    assert "CRITICAL=1, HIGH=2, NORMAL=3, LOW=4" in output
    assert "the heapq loop run beside it" in output


def test_only_runs_the_named_implementations_and_the_reference() -> None:
    """--only keeps heapq: every figure is a ratio to it."""
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    config = BenchConfig(tasks=200, repeat=2, only=("queuekeeper@asyncio",))
    results = run_bench(config, Out())  # type: ignore[arg-type]
    assert ["heapq", "queuekeeper@asyncio"] == [r["name"] for r in results["results"]]
    assert all(2 == len(r["samples"]) for r in results["results"])
    assert [] == results["targets"]  # no pair of a target ran
    assert "queuekeeper@trio" not in "".join(lines)


def test_a_target_pair_is_compared() -> None:
    """When both sides of a target ran, its ratio is reported."""
    config = BenchConfig(
        tasks=200, repeat=1, only=("queuekeeper@trio", "anyio-stream@trio")
    )

    class Sink:
        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    results = run_bench(config, Sink())  # type: ignore[arg-type]
    (target,) = results["targets"]
    assert "queuekeeper@trio" == target["subject"]
    assert "anyio-stream@trio" == target["reference"]
    by_name = {r["name"]: r["samples"] for r in results["results"]}
    # One round: the ratio of its two samples' times.
    (channel,) = by_name["queuekeeper@trio"]
    (stream,) = by_name["anyio-stream@trio"]
    expected = channel["ns_per_op"] / stream["ns_per_op"]
    assert math.isclose(expected, target["ratio"])
    assert target["passed"] is (target["ratio"] <= 1.25)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "nope"], "--only: unknown name 'nope'"),
        (["--tasks", "0"], "--tasks"),
        (["--repeat", "x"], "--repeat"),
        (["--json", "/no/such/dir/out.json"], "--json: no directory '/no/such/dir'"),
    ],
)
def test_bad_flags_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input: exit status 2, one line naming the value, no traceback."""
    assert 2 == main(["bench", *argv])
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert message in err


def test_plot_without_matplotlib_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--plot without the plot extra: one line naming the extra to install; exit 2."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    path = tmp_path / "bench.png"
    status = main(
        [
            "bench",
            "--tasks",
            "100",
            "--repeat",
            "1",
            "--only",
            "heapq",
            "--plot",
            str(path),
        ]
    )
    assert 2 == status
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert "matplotlib is not installed (pip install 'queuekeeper[plot]')" in err
    assert not path.exists()


@pytest.mark.parametrize(
    ("figure", "verdict"),
    [
        (250_000, "Excellent"),
        (150_000, "Good"),
        (60_000, "Acceptable"),
        (10, "Moderate"),
    ],
)
def test_throughput_bands(figure: float, verdict: str) -> None:
    """The comparison document's throughput bands."""
    assert verdict == throughput_verdict(figure)


@pytest.mark.parametrize(
    ("figure", "verdict"),
    [(1.0, "Excellent"), (7.0, "Good"), (30.0, "Acceptable"), (60.0, "Moderate")],
)
def test_latency_bands(figure: float, verdict: str) -> None:
    """The comparison document's latency bands."""
    assert verdict == latency_verdict(figure)


@pytest.mark.parametrize(
    ("violations", "verdict"),
    [(0, "PASS"), (1, "CAUTION"), (10, "CAUTION"), (11, "FAIL")],
)
def test_correctness_bands(violations: int, verdict: str) -> None:
    """The comparison document's correctness bands."""
    assert verdict == correctness_verdict(violations)


def _turned(times: list[float], p99s: list[float]) -> dict[str, Any]:
    """A concurrent result of one sample whose runs took these times and p99s."""
    turns = [
        {"ns_per_op": t, "latency_us_p50": p / 2, "latency_us_p99": p}
        for t, p in zip(times, p99s, strict=True)
    ]
    middle = sorted(times)[len(times) // 2]
    median = {"ns_per_op": middle, "ratio_to_heapq": middle, "latency_us_p99": 0.0}
    return {"median": median, "samples": [{**median, "turns": turns}]}


def test_concurrent_targets_compare_the_runs_of_each_turn() -> None:
    """Each turn's pair is compared: the machine's slow spells cancel in them.

    Here each channel run is 0.9x the time and 0.8x the p99 of the stream run
    beside it, however slow the machine was in that turn.
    """
    stream_times, stream_p99s = [100.0, 300.0, 110.0, 320.0, 105.0], [9.0] * 5
    by_name = {
        "concurrent-anyio-stream@trio": _turned(stream_times, stream_p99s),
        "concurrent-queuekeeper@trio": _turned(
            [0.9 * t for t in stream_times], [0.8 * p for p in stream_p99s]
        ),
        "concurrent-queuekeeper-one-level@trio": _turned(
            [3 * t for t in stream_times], [0.8 * p for p in stream_p99s]
        ),
    }
    found = {t["target"]: t for t in _targets(by_name)}
    speed = found["channel 5+5 bounded throughput vs anyio stream 5+5, trio"]
    p99 = found["channel 5+5 queue-latency p99 vs anyio stream 5+5 (one level), trio"]
    assert math.isclose(speed["ratio"], 1 / 0.9)
    assert math.isclose(p99["ratio"], 0.8)
    assert speed["passed"]
    assert p99["passed"]
    assert 5 == speed["pairs"] == p99["pairs"]


def test_docs_render_script_tabulates_a_run(
    small_run: tuple[dict[str, Any], str],
) -> None:
    """docs/render_bench.py turns the JSON into the tables benchmarks.md includes."""
    script = Path(__file__).parent.parent / "docs" / "render_bench.py"
    render = runpy.run_path(str(script))["render"]
    results, _ = small_run
    markdown = render(results)
    for result in results["results"]:
        assert 1 == markdown.count(f"| `{result['name']}` |"), result["name"]
        if result["kind"] == "fair":  # not counted as violations of strict order
            row = next(r for r in markdown.splitlines() if f"`{result['name']}`" in r)
            assert row.endswith("| n/a (weighted) |"), row
    for target in results["targets"]:
        verdict = "met" if target["passed"] else "missed"
        if "floor" in target:
            floor = f"`{target['floor_subject']}`, {target['floor']:.2f}"
            verdict += f" (floor: {floor})"
        assert f"| {target['target']} | {target['ratio']:.2f} |" in markdown
        assert markdown.count(f"| {verdict} |") >= 1
    assert "tasks 500, repeat 1" in markdown


def test_targets_pair_the_samples_of_each_round() -> None:
    """Single-task samples pair up by round, whatever their heapq references did."""

    def result(times: list[float], references: list[float]) -> dict[str, Any]:
        samples = [
            {"ns_per_op": t, "heapq_ns_per_op": r, "ratio_to_heapq": t / r}
            for t, r in zip(times, references, strict=True)
        ]
        return {"median": samples[0], "samples": samples}

    # The stream's references ran slow in two rounds: their ratios to heapq
    # would put the channel at 1.5x; round by round it costs 1.1x the stream.
    stream = [200.0, 210.0, 190.0, 205.0, 195.0]
    by_name = {
        "anyio-stream@asyncio": result(stream, [800, 800, 400, 400, 400]),
        "queuekeeper@asyncio": result([1.1 * t for t in stream], [400] * 5),
    }
    (target,) = _targets(by_name)
    assert "channel single-task cost vs anyio stream, asyncio" == target["target"]
    assert math.isclose(target["ratio"], 1.1)
    assert target["passed"]
    assert 5 == target["pairs"]


#: The smallest bench the command runs: the heapq reference alone, once.
TINY = ("--tasks", "100", "--repeat", "1", "--only", "heapq")


def test_json_written_to_an_unwritable_path_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json at a directory: the report, then one line naming the path; exit 2."""
    assert 2 == main(["bench", *TINY, "--json", str(tmp_path)])
    out, err = capsys.readouterr()
    assert "COMPARISON: Priority Queue Implementations" in out
    assert 1 == len(err.splitlines()), err
    assert err.startswith(f"queuekeeper bench: error: --json: {str(tmp_path)!r}: ")
    assert "Traceback" not in err


def test_json_holds_the_figures_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json PATH writes every figure of the run and says where."""
    path = tmp_path / "bench.json"
    assert 0 == main(["bench", *TINY, "--json", str(path)])
    out, err = capsys.readouterr()
    assert "" == err
    assert out.endswith(f"results written to {path}\n")
    results = json.loads(path.read_text(encoding="utf-8"))
    assert ["heapq"] == [r["name"] for r in results["results"]]
    assert (100, 1, ["heapq"]) == tuple(
        results["config"][key] for key in ("tasks", "repeat", "only")
    )
    assert results["results"][0]["median"]["ns_per_op"] > 0


def test_a_failing_implementation_is_reported_and_the_others_still_run() -> None:
    """An implementation that raises: FAILED, an ERROR row, no target for it."""
    # The priority channel refuses a capacity of 0; the anyio stream takes it.
    config = BenchConfig(
        tasks=100,
        repeat=1,
        capacity=0,
        only=("concurrent-queuekeeper@trio", "concurrent-anyio-stream@trio"),
    )
    out = io.StringIO()
    results = run_bench(config, out)
    by_name = {r["name"]: r for r in results["results"]}
    failed = by_name["concurrent-queuekeeper@trio"]
    assert {"errors": 1} == failed["median"]
    (sample,) = failed["samples"]
    assert "ns_per_op" not in sample
    assert "ratio_to_heapq" not in sample
    assert sample["error"].startswith("ValueError('max_size must be")
    stream = by_name["concurrent-anyio-stream@trio"]["median"]
    assert 0 == stream["errors"]
    assert stream["ns_per_op"] > 0
    assert [] == results["targets"]  # the one target of the pair needs both
    text = out.getvalue()
    assert "FAILED: concurrent-queuekeeper@trio: ValueError('max_size must be" in text
    assert re.search(
        r"^ERROR +concurrent-queuekeeper@trio +1 failed runs$", text, re.MULTILINE
    )
    assert re.search(r"^PASS +heapq ", text, re.MULTILINE)


def test_concurrent_figures_count_fifo_violations_per_level() -> None:
    """Each consumer must get each producer's items of a level in their order."""
    config = BenchConfig(tasks=5)
    # Consumer 1 got producer 0's CRITICAL items 3 and 2 the wrong way round.
    got = [[(1, 0, 0), (1, 0, 1), (2, 1, 0)], [(1, 0, 3), (1, 0, 2)]]
    sample = _concurrent_sample(config, 10_000, [5000, 1000, 3000, 2000, 4000], got)
    assert 1 == sample["violations"]
    assert {"CRITICAL": 1, "HIGH": 0, "NORMAL": 0, "LOW": 0} == sample[
        "violations_per_level"
    ]
    assert 0 == sample["errors"]
    assert (3.0, 5.0) == (sample["latency_us_p50"], sample["latency_us_p99"])
    assert 1000.0 == sample["ns_per_op"]


def test_concurrent_figures_of_a_run_that_delivered_nothing() -> None:
    """No item arrived: every one counts as an error, and no latency is made up."""
    config = BenchConfig(tasks=5)
    sample = _concurrent_sample(config, 10_000, [], [[], []])
    assert 5 == sample["errors"]
    assert 0 == sample["violations"]
    assert math.isnan(sample["latency_us_p50"])
    assert math.isnan(sample["latency_us_p99"])


@pytest.mark.parametrize("enabled", [True, False])
def test_quiet_keeps_the_collector_out_then_leaves_it_as_it_was(
    enabled: bool,
) -> None:
    """Inside _Quiet the collector is off; after it, as it was before."""
    was = gc.isenabled()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    try:
        with _Quiet():
            assert not gc.isenabled()
        assert enabled == gc.isenabled()
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_memory_is_measured_with_psutil() -> None:
    """With psutil, each single-task sample holds what its queue grew the RSS by."""
    out = io.StringIO()
    results = run_bench(BenchConfig(tasks=100, repeat=2, only=("heapq",)), out)
    (result,) = results["results"]
    assert all(isinstance(s["memory_bytes"], int) for s in result["samples"])
    assert isinstance(result["median"]["memory_bytes"], (int, float))
    text = out.getvalue()
    assert "  psutil: yes\n" in text
    assert re.search(r"^  Memory: \+-?\d+\.\d\d MiB\n", text, re.MULTILINE), text


def test_memory_is_left_out_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psutil the bench runs, and says the memory column shows '-'."""
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if not installed
    out = io.StringIO()
    results = run_bench(BenchConfig(tasks=100, repeat=1, only=("heapq",)), out)
    (result,) = results["results"]
    assert [None] == [s.get("memory_bytes") for s in result["samples"]]
    assert "  psutil: no (memory column shows -)\n" in out.getvalue()


# -- --plot ---------------------------------------------------------------------------


def test_plot_draws_the_implementations_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throughput and cost bars for each implementation with figures, then saved."""
    import matplotlib.axes  # noqa: PLC0415 (the plot extra)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    drawn: list[dict[str, float]] = []
    barh = matplotlib.axes.Axes.barh

    def recording_barh(self: Any, names: Any, widths: Any, **kwargs: Any) -> Any:
        drawn.append(dict(zip(names, widths, strict=True)))
        return barh(self, names, widths, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "barh", recording_barh)
    results = {
        "results": [
            {"name": "heapq", "median": {"ns_per_op": 50.0, "ratio_to_heapq": 1.0}},
            {"name": "broken", "median": {"errors": 1}},
            {"name": "channel", "median": {"ns_per_op": 200.0, "ratio_to_heapq": 4.0}},
        ]
    }
    path = tmp_path / "bench.png"
    plot(results, path)
    assert [{"heapq": 2e7, "channel": 5e6}, {"heapq": 1.0, "channel": 4.0}] == drawn
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [] == plt.get_fignums()  # closed once saved


def test_plot_to_an_unwritable_path_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot at a folder: the report, then one line naming the path; exit 2.

    The figure is closed all the same: none is left open in the process.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 (the plot extra)

    open_before = plt.get_fignums()
    path = tmp_path / "bench.png"
    path.mkdir()  # a folder of that name: found writable up front, refused at the end
    assert 2 == main(["bench", *TINY, "--plot", str(path)])
    out, err = capsys.readouterr()
    assert "COMPARISON: Priority Queue Implementations" in out
    assert 1 == len(err.splitlines()), err
    assert err.startswith(f"queuekeeper bench: error: --plot: {str(path)!r}: ")
    assert "Traceback" not in err
    assert open_before == plt.get_fignums()


def test_rounds_alternate_the_order_of_their_groups_within_each_section() -> None:
    """Odd rounds run each section's groups in order, even rounds backwards."""
    groups = _round_groups(list(_IMPLEMENTATIONS))
    names = [[impl.name for impl in group] for group in groups]
    first = [[impl.name for impl in group] for group in _round_order(groups, 1)]
    second = [[impl.name for impl in group] for group in _round_order(groups, 2)]
    assert names == first

    def sections(order: list[list[str]]) -> list[str]:
        by_name = {impl.name: impl.section for impl in _IMPLEMENTATIONS}
        return [by_name[group[0]] for group in order]

    assert sections(first) == sections(second)  # the sections keep their order
    for section in ("single", "concurrent", "pool"):
        forward = [
            g for g, s in zip(first, sections(first), strict=True) if s == section
        ]
        backward = [
            g for g, s in zip(second, sections(second), strict=True) if s == section
        ]
        assert forward[::-1] == backward
