"""What users install and import: the core alone, extras on demand, downward layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "queuekeeper"

#: The layers, bottom first: a module may import from its own layer and those below.
LAYERS = {
    "ground": {
        "_util",
        "_version",
        "_priority",
        "_errors",
        "_states",
        "_status",
        "_observer",
        "_policies",
    },
    "queue": {"_queue", "_channel", "_memory", "_redis", "_order", "_fair"},
    "pool": {"_pool"},
    "integrations": {"_prometheus"},
    "tools": {"cli", "__main__"},
    "package": {"__init__", "redis"},
}
RANK = {top: rank for rank, tops in enumerate(LAYERS.values()) for top in tops}


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter, as a user's program would."""
    return subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def test_import_queuekeeper_pulls_in_no_optional_package() -> None:
    """Neither trio, rich nor prometheus_client: the core needs anyio and attrs."""
    done = python(
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "import queuekeeper\n"
        "took = time.perf_counter() - start\n"
        "optional = ('trio', 'rich', 'prometheus_client', 'aiojobs', 'matplotlib',"
        " 'coredis')\n"
        "print(sorted(name for name in optional if name in sys.modules))\n"
        "print(f'import queuekeeper: {1000 * took:.0f} ms', file=sys.stderr)\n"
    )
    assert (0, "[]") == (done.returncode, done.stdout.strip()), done.stderr
    print(done.stderr.strip())  # noqa: T201 - the import time, for the record


MISSING = "import sys\nsys.modules[{name!r}] = None  # as if it were not installed\n"


def test_the_redis_module_without_its_extra_names_the_extra() -> None:
    """No coredis: ImportError naming queuekeeper[redis]; queuekeeper still imports."""
    done = python(
        MISSING.format(name="coredis")
        + "import queuekeeper\n"
        + "try:\n"
        + "    import queuekeeper.redis\n"
        + "except ImportError as exc:\n"
        + "    print(exc)\n"
    )
    assert (0, "the Redis queue needs coredis: pip install 'queuekeeper[redis]'") == (
        done.returncode,
        done.stdout.strip(),
    ), done.stderr


def test_the_command_without_the_cli_extra_says_so_in_one_line() -> None:
    """No rich: one line naming queuekeeper[cli], exit status 2, no traceback."""
    done = python(
        MISSING.format(name="rich")
        + "from queuekeeper.cli import main\nsys.exit(main(['run']))\n"
    )
    assert 2 == done.returncode
    assert [
        "queuekeeper: the command line needs rich: pip install 'queuekeeper[cli]'"
    ] == done.stderr.splitlines()


@pytest.mark.parametrize(
    ("name", "argv", "extra"),
    [
        ("trio", ["run", "--backend", "trio"], "trio"),
        ("prometheus_client", ["run", "--metrics-port", "0"], "prometheus"),
        ("trio", ["bench"], "cli"),
    ],
)
def test_options_without_their_extra_say_so_in_one_line(
    name: str, argv: list[str], extra: str
) -> None:
    """An option whose package is missing names the extra; the run never starts."""
    done = python(
        MISSING.format(name=name)
        + f"from queuekeeper.cli import main\nsys.exit(main({argv!r}))\n"
    )
    assert 2 == done.returncode
    lines = done.stderr.splitlines()
    assert 1 == len(lines), done.stderr
    assert lines[0].endswith(f"needs {name}: pip install 'queuekeeper[{extra}]'")


def test_prometheus_metrics_without_the_extra_is_an_import_error_naming_it() -> None:
    """Importing works; making one says which extra to install."""
    done = python(
        MISSING.format(name="prometheus_client")
        + "from queuekeeper import PrometheusMetrics\n"
        + "try:\n    PrometheusMetrics()\n"
        + "except ImportError as exc:\n    print(exc)\n"
    )
    assert (0, "") == (done.returncode, done.stderr)
    assert "pip install 'queuekeeper[prometheus]'" in done.stdout


def module_name(path: Path) -> str:
    """``queuekeeper._pool._admission`` for its file; a package's is its own name."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The queuekeeper modules *path* imports, type-checking-only imports included."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def rank(module: str) -> int:
    """The layer of *module*: that of its first part below ``queuekeeper``."""
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else "__init__"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_from_its_layer_or_below(module: str) -> None:
    """Layers look down, even for type hints (ARCHITECTURE: ground to tools)."""
    above = {name for name in imports(MODULES[module]) if rank(name) > rank(module)}
    assert set() == above


def test_no_module_imports_form_a_cycle() -> None:
    """No import cycle between the package's modules, type hints included."""
    graph = {module: imports(path) for module, path in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module not in done:
            for name in sorted(graph[module]):
                visit(name, (*path, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert {"queuekeeper", "queuekeeper._pool", "queuekeeper.cli"} <= done
