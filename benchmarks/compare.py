"""Two source trees on one row, side by side: the before/after this shared machine allows.

Run from the repository root, with two checkouts (``git worktree add``)::

    python -m benchmarks.compare BEFORE AFTER [--row asyncio+memory] [--shape events]
        [--scale 0.03] [--rounds 6] [--instructions]

Runs of one tree after the other swing by ±20 % here, more than most changes
being measured. So each round runs the row in both trees at the same time,
each process pinned to a core of its own (its receiver with it), and the two
swap cores every round: both meet the same neighbours. Each run is the row
under ``python -m benchmarks --profile`` (which every tree since the
profiler was added understands), its CPU seconds read in the run's own
process. The figure is the median of the rounds' ratios, AFTER over BEFORE.

``--instructions`` counts instead of timing: each tree runs the row twice
under ``valgrind --tool=callgrind`` (the trees side by side), at a tenth of
``--scale`` and at three tenths, and the difference between the two runs'
instructions over the difference in deliveries (start-up cancels out) is
the tree's instructions per delivery. It moves by about 1 % between
runs of one tree, so it shows a change of a few per cent that the CPU time
cannot; it counts no time spent in the kernel (a system call counts as the
few instructions that make it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.callgrind import total, under_callgrind
from benchmarks.workload import SHAPE_NAMES, SHAPES, scaled

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


def _child(row: str, shape: str, scale: float) -> list[str]:
    return [sys.executable, "-c", _CHILD, row, shape, str(scale)]


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}


def start(tree: Path, core: int, row: str, shape: str, scale: float) -> subprocess.Popen[str]:
    """The row running in ``tree``, pinned to ``core``."""
    return subprocess.Popen(
        _child(row, shape, scale),
        cwd=tree,
        env=_env(tree),
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),  # noqa: PLW1509 - no threads here
    )


def start_counted(
    tree: Path, row: str, shape: str, scale: float, out: Path
) -> subprocess.Popen[str]:
    """The row running in ``tree`` under callgrind, which writes its counts to ``out``."""
    return subprocess.Popen(
        under_callgrind(out, _child(row, shape, scale)),
        cwd=tree,
        env=_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def counted(process: subprocess.Popen[str], out: Path) -> int:
    """The instructions a run under ``start_counted`` executed."""
    _, errors = process.communicate()
    if process.returncode:
        raise SystemExit(f"a run under callgrind failed (exit {process.returncode}):\n{errors}")
    return total(out)


def instructions_per_delivery(args: argparse.Namespace) -> int:
    """Print each tree's instructions per delivery on the row, and their ratio."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    trees = [args.before.resolve(), args.after.resolve()]
    shape = next(s for s in SHAPES if s.name == args.shape)
    small, large = args.scale / 10, args.scale * 3 / 10
    deliveries = scaled(shape, large, False).deliveries - scaled(shape, small, False).deliveries
    if deliveries <= 0:
        raise SystemExit(
            f"--instructions needs a shape whose deliveries grow with --scale, not {shape.name!r}"
        )
    totals: dict[Path, list[int]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as directory:
        for scale in (small, large):
            outs = [Path(directory) / f"{n}-{scale:g}.out" for n in range(2)]
            runs = [
                start_counted(tree, args.row, args.shape, scale, out)
                for tree, out in zip(trees, outs, strict=True)
            ]
            try:
                for tree, run, out in zip(trees, runs, outs, strict=True):
                    totals[tree].append(counted(run, out))
            finally:
                for run in runs:
                    if run.poll() is None:
                        run.kill()
                        run.wait()
    before, after = ((totals[t][1] - totals[t][0]) / deliveries for t in trees)
    print(
        f"{args.row} ({args.shape}): instructions per delivery, before {before:,.0f}, "
        f"after {after:,.0f}: after/before {after / before:.3f}"
    )
    return 0


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
    parser.add_argument("--shape", default="events", choices=SHAPE_NAMES)
    parser.add_argument("--scale", type=float, default=0.03)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    args = parser.parse_args(argv)
    if args.instructions:
        return instructions_per_delivery(args)
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
