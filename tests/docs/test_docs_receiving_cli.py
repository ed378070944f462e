"""The receiver guide's and the command-line reference's examples run as written.

Python blocks of docs/receiving.md run as scripts in a fresh interpreter
(``run_as_pasted``). The ``console`` blocks of docs/cli.md run in order in one
scratch directory, as one bash session per document: each ``$ `` line is a
command, and the lines under it are its expected output, where ``...`` stands
for any text (within a line, or as a line of its own: any number of lines).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.cli_helpers import LOOPBACK_ENV, process_env
from tests.docs.test_docs_examples import DOCS, python_blocks, run_as_pasted

RECEIVING = python_blocks("receiving.md")
CONSOLE = re.compile(r"```console\n(.*?)```", re.DOTALL)
MARK = "@@webhooks-docs-step"


@pytest.mark.parametrize("index", range(len(RECEIVING)))
def test_receiving_guide_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(RECEIVING[index], tmp_path)


def test_the_receiving_guide_covers_every_framework() -> None:
    text = "\n".join(RECEIVING)
    for name in ("starlette", "fastapi", "flask", "django", "ThreadWorkQueue", "SQLiteIdempotency"):
        assert name in text


def steps(markdown: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every ``$`` line of every console block."""
    found: list[tuple[str, list[str]]] = []
    for block in CONSOLE.findall(markdown):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def _line_pattern(expected: str) -> str:
    """``...`` is any text; a run of spaces is any run of spaces (table columns vary)."""
    pieces = re.split(r"(\.\.\.|\s+)", expected.strip())
    return "".join(
        ".*" if p == "..." else r"\s+" if p.isspace() else re.escape(p) for p in pieces if p
    )


def matches(expected: list[str], actual: list[str]) -> bool:
    """``actual`` lines fit ``expected`` (``...`` alone on a line: any number of lines)."""
    pattern = "".join(
        r"(?:.*\n)*?" if line.strip() == "..." else r"[ \t]*" + _line_pattern(line) + r"\n"
        for line in expected
    )
    text = "".join(line.rstrip() + "\n" for line in actual)
    return re.fullmatch(pattern + r"(?:.*\n)*" if not expected else pattern, text) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_env(directory: Path) -> dict[str, str]:
    """The test's environment without the loopback settings: the documents must set them."""
    env = process_env({"PATH": f"{directory}:{os.environ['PATH']}"})
    for name in LOOPBACK_ENV:
        env.pop(name, None)
    return env


def run_session(markdown: str, directory: Path) -> list[tuple[str, list[str], list[str]]]:
    """Run every command in one bash session; (command, expected, actual output) per step."""
    found = steps(markdown)
    script = ["set -u", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for index, (command, _) in enumerate(found):
        script += [f"echo {MARK} {index}", command, f"echo {MARK} status $?"]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=directory,
        env=_session_env(directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    outputs: list[list[str]] = []
    for line in done.stdout.splitlines():
        if line.startswith(f"{MARK} status "):
            outputs[-1].append(line)
        elif line.startswith(MARK):
            outputs.append([])
        elif outputs:
            outputs[-1].append(line)
    assert len(outputs) == len(found), done.stdout
    return [(c, e, o) for (c, e), o in zip(found, outputs, strict=True)]


def test_the_cli_reference_runs_as_shown(tmp_path: Path) -> None:
    markdown = (DOCS / "cli.md").read_text(encoding="utf-8")
    port = free_port()
    markdown = markdown.replace("8000", str(port))
    launcher = tmp_path / "webhooks"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m transports.cli "$@"\n')
    launcher.chmod(0o755)
    for command, shown, output in run_session(markdown, tmp_path):
        *printed, status = output
        wanted, expected = "0", shown
        if shown and shown[-1].startswith("(exit status "):
            wanted = shown[-1].removeprefix("(exit status ").rstrip(")")
            expected = shown[:-1]
        assert status == f"{MARK} status {wanted}", f"$ {command}\n" + "\n".join(printed)
        assert matches(expected, printed), (
            f"$ {command}\nexpected:\n" + "\n".join(expected) + "\ngot:\n" + "\n".join(printed)
        )
