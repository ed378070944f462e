"""Two source trees on one row, side by side: the before/after this shared machine allows.

Run from the repository root, with two checkouts (``git worktree add``)::

    python -m benchmarks.compare BEFORE AFTER [--row asyncio+memory] [--shape events]
        [--scale 0.03] [--rounds 6]

Runs of one tree after the other swing by ±20 % here, more than most changes
being measured. So each round runs the row in both trees at the same time,
each process pinned to a core of its own (its receiver with it), and the two
swap cores every round: both meet the same neighbours. Each run is the row
under ``python -m benchmarks --profile`` (which every tree since the
profiler was added understands), its CPU seconds read in the run's own
process. The figure is the median of the rounds' ratios, AFTER over BEFORE.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Runs in the tree measured: its own benchmarks package, its profiler hook replaced
# by a CPU clock around the row.
_CHILD = """
import sys, tempfile, time
from pathlib import Path
import benchmarks.diagnostics as diagnostics
def run_row(run):
    with tempfile.TemporaryDirectory() as directory:
        began = time.process_time()
        run(Path(directory))
        print("cpu", time.process_time() - began)
diagnostics.profile_row = run_row
from benchmarks.__main__ import main
main(["--profile", sys.argv[1], "--shape", sys.argv[2], "--scale", sys.argv[3], "--no-postgres"])
"""


def start(tree: Path, core: int, row: str, shape: str, scale: float) -> subprocess.Popen[str]:
    """The row running in ``tree``, pinned to ``core``."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    command = [sys.executable, "-c", _CHILD, row, shape, str(scale)]
    return subprocess.Popen(
        command,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),  # noqa: PLW1509 - no threads here
    )


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    """The CPU seconds the row took, as its process printed them."""
    out, _ = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("cpu ")]
    if process.returncode or not lines:
        raise SystemExit(f"a run failed (exit {process.returncode}):\n{out}")
    return float(lines[-1].split()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="two source trees on one row, side by side")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--row", default="asyncio+memory")
    parser.add_argument("--shape", default="events")
    parser.add_argument("--scale", type=float, default=0.03)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or args.rounds < 1:
        parser.error("needs two cores and at least one round")
    ratios = []
    for round_no in range(args.rounds):
        first, second = cores[round_no % 2], cores[1 - round_no % 2]
        runs = [
            start(args.before.resolve(), first, args.row, args.shape, args.scale),
            start(args.after.resolve(), second, args.row, args.shape, args.scale),
        ]
        before, after = (cpu_seconds(p) for p in runs)
        ratios.append(after / before)
        print(f"round {round_no + 1}: before {before:.2f} s, after {after:.2f} s CPU")
    print(
        f"{args.row} ({args.shape}, scale {args.scale:g}): after/before CPU, median of "
        f"{len(ratios)} rounds: {statistics.median(ratios):.3f} "
        f"(rounds {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
