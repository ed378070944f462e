"""The core is sans-IO: no sockets, threads, event loops, clocks, randomness or processes.

Two independent checks:

1. A fresh interpreter imports ``webhook_core`` and every submodule with a spy on
   ``builtins.__import__`` that records every import statement executed by code in
   the package. ``time`` and ``os`` are already in ``sys.modules`` when Python
   starts, so looking at ``sys.modules`` alone would miss ``import time``; the spy
   sees the statement itself. The same run also reports which forbidden modules
   became loaded at all (through any chain of imports).
2. An AST scan of the sources for clock reads (``datetime.now()``, ``time.time()``
   and friends), randomness and forbidden imports anywhere, including inside
   functions that an import never runs.

Both checkers are run against a deliberately impure fake package too, to prove
they can fail.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = SRC / "webhook_core"

# Modules the core must not import. ``os`` is preloaded by the interpreter, so it can
# only be caught as an import statement, which the spy does.
FORBIDDEN = frozenset(
    {
        "socket",
        "_socket",
        "ssl",
        "threading",
        "_thread",
        "asyncio",
        "trio",
        "anyio",
        "httpx",
        "httpcore",
        "h11",
        "httptools",
        "aiohttp",
        "sqlite3",
        "psycopg",
        "psycopg_pool",
        "time",
        "random",
        "secrets",
        "uuid",
        "selectors",
        "select",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "signal",
        "os",
        "urllib.request",
        "http.client",
    }
)

# Run in the fresh interpreter: argv[1] is the package name, argv[2] the path to put
# first on sys.path.
AUDIT_SCRIPT = textwrap.dedent(
    """
    import builtins
    import importlib
    import json
    import pkgutil
    import sys

    package, path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, path)

    # Third-party dependencies are imported before the snapshot: attrs itself imports
    # threading (for a thread-local in its repr recursion guard) and cattrs pulls in
    # more of the standard library. That is outside our control and does not make
    # the core do I/O; what we police is what webhook_core's own code imports.
    import attrs
    import cattrs
    import cattrs.gen
    import cattrs.v

    before = set(sys.modules)
    statements = []
    real_import = builtins.__import__

    def spy(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__") or ""
        if importer == package or importer.startswith(package + "."):
            if level:
                # Relative import: resolve it against the importing package.
                is_package = "__path__" in (globals or {})
                base = importer if is_package else importer.rpartition(".")[0]
                for _ in range(level - 1):
                    base = base.rpartition(".")[0]
                name = base + ("." + name if name else "")
            targets = [name]
            # "from x import y" may import the submodule x.y.
            targets += [name + "." + item for item in (fromlist or ()) if item != "*"]
            statements.append({"importer": importer, "targets": targets})
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = spy
    try:
        root = importlib.import_module(package)
        modules = [package]
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
            modules.append(info.name)
    finally:
        builtins.__import__ = real_import
    print(json.dumps({
        "modules": modules,
        "statements": statements,
        "new_modules": sorted(set(sys.modules) - before),
    }))
    """
)


@attrs.frozen
class ImportAudit:
    """What importing a package in a fresh interpreter did."""

    modules: tuple[str, ...]
    statements: tuple[tuple[str, tuple[str, ...]], ...]  # (importer, imported names)
    new_modules: frozenset[str]


def audit_imports(package: str, path: Path) -> ImportAudit:
    """Import ``package`` (found under ``path``) and all its submodules in a fresh Python."""
    completed = subprocess.run(
        [sys.executable, "-I", "-c", AUDIT_SCRIPT, package, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    return ImportAudit(
        tuple(data["modules"]),
        tuple((s["importer"], tuple(s["targets"])) for s in data["statements"]),
        frozenset(data["new_modules"]),
    )


def is_forbidden(module: str) -> bool:
    """True for a forbidden module or any submodule of one (``asyncio.events``)."""
    parts = module.split(".")
    return any(".".join(parts[:i]) in FORBIDDEN for i in range(1, len(parts) + 1))


def import_violations(audit: ImportAudit) -> list[str]:
    """Forbidden imports: statements executed by the package, and modules newly loaded."""
    problems = [
        f"{importer} imports {target}"
        for importer, targets in audit.statements
        for target in targets
        if is_forbidden(target)
    ]
    problems += [f"{m} became loaded" for m in sorted(audit.new_modules) if is_forbidden(m)]
    return problems


# Methods that read the clock whatever they are called on (``dt.now()`` after
# ``from datetime import datetime as dt``), and module functions that read a clock
# or draw randomness.
CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
CLOCK_CALLS = frozenset(
    {
        ("time", "time"),
        ("time", "time_ns"),
        ("time", "monotonic"),
        ("time", "monotonic_ns"),
        ("time", "perf_counter"),
        ("time", "sleep"),
        ("os", "urandom"),
        ("os", "getrandom"),
        ("uuid", "uuid1"),
        ("uuid", "uuid4"),
    }
)
FORBIDDEN_BUILTINS = frozenset({"open", "input", "breakpoint"})


def _dotted(node: ast.expr) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def source_violations(files: list[Path]) -> list[str]:
    """Clock reads, randomness, file access and forbidden imports found in ``files``."""
    problems: list[str] = []
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            where = f"{file.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                dotted = _dotted(node.func)
                if (len(dotted) >= 2 and tuple(dotted[-2:]) in CLOCK_CALLS) or (
                    isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_METHODS
                ):
                    problems.append(f"{where} calls {'.'.join(dotted)}()")
                if len(dotted) == 1 and dotted[0] in FORBIDDEN_BUILTINS:
                    problems.append(f"{where} calls {dotted[0]}()")
                if dotted[:1] in (["random"], ["secrets"]):
                    problems.append(f"{where} calls {'.'.join(dotted)}()")
            elif isinstance(node, ast.Import):
                problems += [
                    f"{where} imports {a.name}" for a in node.names if is_forbidden(a.name)
                ]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                problems += [f"{where} imports {n}" for n in names if is_forbidden(n)]
    return sorted(problems, key=_line_order)


def _line_order(problem: str) -> tuple[str, int, str]:
    where, _, what = problem.partition(" ")
    file, _, line = where.rpartition(":")
    return (file, int(line), what)


# --- the real package ------------------------------------------------------------------


def test_core_imports_nothing_forbidden() -> None:
    audit = audit_imports("webhook_core", SRC)
    # The audit really walked the package and saw its imports.
    expected = {f"webhook_core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"}
    assert expected <= set(audit.modules)
    assert any(
        importer == "webhook_core.retry" and "hashlib" in targets
        for importer, targets in audit.statements
    )
    assert import_violations(audit) == []


def test_importing_the_core_is_cheap() -> None:
    # No HTTP client, event loop library or database comes along with the core.
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); import webhook_core; print(*sys.modules)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert "webhook_core.delivery_machine" in loaded
    heavy = {
        "httpx",
        "httpcore",
        "h11",
        "anyio",
        "trio",
        "asyncio",
        "sniffio",
        "sqlite3",
        "psycopg",
    }
    assert loaded & heavy == set()


def test_core_sources_read_no_clock() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 10
    assert source_violations(files) == []


# --- the checkers can fail -------------------------------------------------------------


def write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def test_audit_flags_import_of_a_preloaded_module(tmp_path: Path) -> None:
    # `time` is already in sys.modules at startup: only the import spy can see this.
    write_package(
        tmp_path,
        "fakecore",
        {
            "__init__": "from fakecore import clean\n",
            "clean": "import json\n",
            "clock": "import time\n\ndef now():\n    return time.time()\n",
        },
    )
    audit = audit_imports("fakecore", tmp_path)
    assert set(audit.modules) == {"fakecore", "fakecore.clean", "fakecore.clock"}
    assert import_violations(audit) == ["fakecore.clock imports time"]
    assert source_violations(sorted((tmp_path / "fakecore").glob("*.py"))) == [
        "clock.py:1 imports time",
        "clock.py:4 calls time.time()",
    ]


def test_audit_flags_newly_loaded_and_nested_imports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        "fakecore2",
        {
            "__init__": "",
            "net": "from socket import create_connection\n",
            "osuser": "import os.path\n",
            "loop": "from asyncio import events\n",
        },
    )
    problems = import_violations(audit_imports("fakecore2", tmp_path))
    assert "fakecore2.net imports socket" in problems
    assert "fakecore2.osuser imports os.path" in problems
    assert "fakecore2.loop imports asyncio" in problems
    assert "socket became loaded" in problems
    assert "asyncio became loaded" in problems


def test_source_scan_flags_clock_reads_inside_functions(tmp_path: Path) -> None:
    file = tmp_path / "sneaky.py"
    file.write_text(
        textwrap.dedent(
            """
            import datetime
            from datetime import datetime as dt

            def stamp():
                return datetime.datetime.now()

            def stamp2():
                return dt.utcnow()

            def lucky():
                import random
                return random.random()

            def read():
                return open("/etc/hosts").read()
            """
        ),
        encoding="utf-8",
    )
    assert source_violations([file]) == [
        "sneaky.py:6 calls datetime.datetime.now()",
        "sneaky.py:9 calls dt.utcnow()",
        "sneaky.py:12 imports random",
        "sneaky.py:13 calls random.random()",
        "sneaky.py:16 calls open()",
    ]
