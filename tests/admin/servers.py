"""The management API served for real on 127.0.0.1: uvicorn (asyncio) or hypercorn (trio)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SERVERS = ("uvicorn", "hypercorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and thread.is_alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not start listening on port {port}")


@contextmanager
def serving(app: Any, server: str) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield its base URL."""
    port = _free_port()
    if server == "uvicorn":
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        uvicorn_server = uvicorn.Server(config)
        thread = threading.Thread(target=uvicorn_server.run, daemon=True)
        thread.start()
        try:
            _wait_listening(port, thread)
            yield f"http://127.0.0.1:{port}"
        finally:
            uvicorn_server.should_exit = True
            thread.join(15)
        return
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    hyper = Config()
    hyper.bind = [f"127.0.0.1:{port}"]
    hyper.loglevel = "WARNING"
    stop = threading.Event()

    async def shutdown_trigger() -> None:
        while not stop.is_set():
            await trio.sleep(0.05)

    async def main() -> None:
        await serve(app, hyper, shutdown_trigger=shutdown_trigger)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        _wait_listening(port, thread)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(15)
