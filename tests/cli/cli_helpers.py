"""Running the ``webhooks`` command: in-process with click's runner, or as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from transports.cli import cli
from transports.testing import Handler, ReceivedRequest, Respond

SRC = Path(__file__).resolve().parents[2] / "src"
LOOPBACK_ENV = {"WEBHOOKS_ALLOW_HTTP": "1", "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}


def run(db: Path | str, *args: str, env: dict[str, str] | None = None) -> Result:
    """``webhooks --db DB ARGS...`` in-process; the result carries output and exit code."""
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """Check that the command failed as a user error (exit 2, one line, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def handshake_then(then: Any = None) -> Handler:
    """A loopback behaviour that answers the handshake with its token and ``then`` otherwise."""
    otherwise = Respond(200) if then is None else then

    def answer(request: ReceivedRequest) -> Any:
        body = request.json()
        if body.get("event") == "webhook.verification":
            return Respond(200, body["data"]["verification_token"].encode())
        return otherwise

    return Handler(answer)


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``webhooks`` subprocess: this checkout's sources, unbuffered."""
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.pop("WEBHOOKS_DB", None)
    env.update(extra or {})
    return env


class Command:
    """A ``webhooks`` process whose output lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transports.cli", *args],
            cwd=cwd,
            env=process_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first output line matching ``pattern``; fails with the output after ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; output:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.5))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``signum`` and wait for the process to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        """End the process if it still runs (test clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)


def run_process(*args: str, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``webhooks ARGS...`` to completion as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "transports.cli", *args],
        cwd=cwd,
        env=process_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )
