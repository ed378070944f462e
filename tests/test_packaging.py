"""What the distribution declares: type information, and every third-party import of src/."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("webhook_core", "transports")


def test_both_packages_ship_type_information() -> None:
    for package in PACKAGES:
        assert (ROOT / "src" / package / "py.typed").is_file()


def imported_top_level_modules() -> set[str]:
    """Every top-level module an import statement in src/ names (functions' imports too)."""
    found: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] for r in requirements}
    return {n.lower().replace("_", "-") for n in names}


def test_every_third_party_import_is_declared() -> None:
    third_party = imported_top_level_modules() - set(sys.stdlib_module_names) - set(PACKAGES)
    assert {"attrs", "httpx", "sniffio"} <= third_party
    distributions = packages_distributions()
    declared = declared_distributions()
    missing = {
        module: distributions.get(module)
        for module in third_party
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}
