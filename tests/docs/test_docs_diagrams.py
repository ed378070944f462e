"""docs/state-diagrams.md is generated from the transition tables and kept up to date."""

from __future__ import annotations

import enum
import importlib.util
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from webhook_core import delivery_machine, endpoint_machine

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "state_diagrams.py"
DOC = ROOT / "docs" / "state-diagrams.md"

Table = Mapping[tuple[Any, type], frozenset[Any]]
MACHINES: list[tuple[str, Table, type[enum.Enum]]] = [
    ("Delivery", delivery_machine.TRANSITIONS, delivery_machine.DeliveryState),
    ("Endpoint", endpoint_machine.TRANSITIONS, endpoint_machine.EndpointState),
]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("state_diagrams", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def diagram(text: str, title: str) -> str:
    """The Mermaid block of the section titled ``title``."""
    section = text.split(f"## {title}\n", 1)[1]
    match = re.search(r"```mermaid\n(.*?)\n```", section, re.S)
    assert match is not None
    return match.group(1)


def arrows(mermaid: str) -> set[tuple[str, str, str]]:
    """(source, target, input) for every labelled arrow."""
    found = set()
    for line in mermaid.splitlines():
        match = re.fullmatch(r"\s+(\w+) --> (\w+): (.+)", line)
        if match:
            for given in match.group(3).split(", "):
                found.add((match.group(1), match.group(2), given))
    return found


def test_check_passes_for_the_committed_file() -> None:
    completed = run_script("--check")
    assert completed.returncode == 0, completed.stderr


def test_check_fails_when_out_of_date(tmp_path: Path) -> None:
    stale = tmp_path / "diagrams.md"
    assert run_script("--check", "--output", str(stale)).returncode == 1  # missing
    assert run_script("--output", str(stale)).returncode == 0
    assert run_script("--check", "--output", str(stale)).returncode == 0
    stale.write_text(stale.read_text().replace("--> failed", "--> delivered"))
    completed = run_script("--check", "--output", str(stale))
    assert completed.returncode == 1
    assert "out of date" in completed.stderr


@pytest.mark.parametrize(("title", "table", "states"), MACHINES, ids=[m[0] for m in MACHINES])
def test_every_state_and_transition_is_drawn(
    title: str, table: Table, states: type[enum.Enum]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text == load_script().render()
    mermaid = diagram(text, title)
    assert mermaid.startswith("stateDiagram-v2\n")
    expected = {
        (source.value, target.value, given.__name__)
        for (source, given), targets in table.items()
        for target in targets
    }
    assert arrows(mermaid) == expected
    for state in states:
        assert re.search(rf"\b{state.value}\b", mermaid), state
        assert f"`{state.value}`" in text.split(f"## {title}\n", 1)[1]


def test_initial_and_terminal_states_are_marked() -> None:
    text = DOC.read_text(encoding="utf-8")
    delivery_diagram = diagram(text, "Delivery")
    assert "[*] --> pending" in delivery_diagram
    assert {line.strip() for line in delivery_diagram.splitlines() if line.endswith("[*]")} == {
        "delivered --> [*]",
        "failed --> [*]",
    }
    endpoint_diagram = diagram(text, "Endpoint")
    assert "[*] --> unverified" in endpoint_diagram
    assert not any(line.endswith("--> [*]") for line in endpoint_diagram.splitlines())


def test_intro_comes_from_the_docstrings() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "A delivery is created `pending` and due at once." in text
    assert "An endpoint starts `unverified`." in text
    assert "``" not in text.replace("```", "")  # reST literals were converted
