"""docs/management-api.md: its ``console`` blocks run as one bash session against a live
``webhooks admin`` server (curl on 127.0.0.1), and print what the document shows."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tests.docs.test_docs_examples import DOCS
from tests.docs.test_docs_receiving_cli import MARK, free_port, matches, run_session


def test_the_management_api_guide_runs_as_shown(tmp_path: Path) -> None:
    markdown = (DOCS / "management-api.md").read_text(encoding="utf-8")
    markdown = markdown.replace("8400", str(free_port()))
    launcher = tmp_path / "webhooks"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m transports.cli "$@"\n')
    launcher.chmod(0o755)
    session = run_session(markdown, tmp_path)
    assert len(session) >= 12
    for command, expected, output in session:
        *printed, status = output
        assert status == f"{MARK} status 0", f"$ {command}\n" + "\n".join(printed)
        assert matches(expected, printed), (
            f"$ {command}\nexpected:\n" + "\n".join(expected) + "\ngot:\n" + "\n".join(printed)
        )
