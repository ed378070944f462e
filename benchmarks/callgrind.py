"""Counting instructions with ``valgrind --tool=callgrind``, for the benchmarks that compare
two run lengths (start-up cancels out in the difference)."""

from __future__ import annotations

from pathlib import Path


def under_callgrind(out: Path, command: list[str]) -> list[str]:
    """``command`` run under callgrind, which writes its counts to ``out``."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command]


def total(out: Path) -> int:
    """The instructions a finished callgrind run counted."""
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"callgrind wrote no totals to {out}")
