"""Generate the threaded driver's shared body from the async one.

    python scripts/unasync.py          # write src/transports/sync/driver.py
    python scripts/unasync.py --check  # exit 1 if it is stale (a test runs this too)

Like httpcore's ``unasync.py``: the async source is the one that is edited;
the sync file is the same code with ``async``/``await`` removed and ``Async``
names made ``Sync`` (and the grouped publisher the threaded one), then its
imports sorted and formatted with ruff.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/transports/aio/driver.py"
TARGET = ROOT / "src/transports/sync/driver.py"

SUBSTITUTIONS = (
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bAsyncDriver\b", "SyncDriver"),
    (r"\bAsyncHttpTransport\b", "SyncHttpTransport"),
    (r"\btransports\.aio\.publishing\b", "transports.sync.publishing"),
    (r"\bGroupedPublisher\b", "ThreadedGroupedPublisher"),
)

HEADER = '''"""What both drivers do, written once: the threaded driver's copy.

GENERATED from ``transports/aio/driver.py`` by ``scripts/unasync.py``: edit
that file and run the script; a test fails while this one is stale.
"""
'''


def generate() -> str:
    """The sync module's text, formatted as the project formats code."""
    text = SOURCE.read_text()
    docstring_end = text.index('"""', 3) + 3
    body = text[docstring_end:]
    for pattern, replacement in SUBSTITUTIONS:
        body = re.sub(pattern, replacement, body)
    text = HEADER + body
    # Renamed modules move between import blocks: sort them again, then format.
    for command in (("check", "--fix", "--select", "I", "--quiet"), ("format",)):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(TARGET), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main() -> int:
    """Write the sync module, or with ``--check`` say whether it is stale."""
    fresh = generate()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != fresh:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/unasync.py")
            return 1
        return 0
    TARGET.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
