"""The code in the user-facing docs runs as pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_blocks(name: str) -> list[str]:
    return BLOCK.findall((DOCS / name).read_text(encoding="utf-8"))


VIRTUAL_TIME = python_blocks("testing-in-virtual-time.md")


def test_the_tutorial_has_an_example_per_runtime() -> None:
    text = "\n".join(VIRTUAL_TIME)
    assert 'backend="trio"' in text
    assert 'backend="asyncio"' in text
    assert "ThreadedWebhookService" in text


@pytest.mark.parametrize("index", range(len(VIRTUAL_TIME)))
def test_virtual_time_tutorial_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(VIRTUAL_TIME[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
