"""A local HTTP receiver for the benchmarks that is not the bottleneck.

What it is
----------
``Receiver`` starts a throwaway HTTP/1.1 server on ``127.0.0.1`` at a free
port that answers every request (any method) with ``200`` and the body
``OK``, or ``500`` for paths under ``/fail/`` (a failing endpoint), keeping
connections alive. It is a context manager::

    with Receiver() as rx:          # rx.kind is "nginx" or "python"
        url = rx.url("/hooks/0")    # http://127.0.0.1:PORT/hooks/0

First choice is nginx (``/usr/sbin/nginx``; on Debian ``apt-get install -y
nginx-light``), run in the foreground (``-g 'daemon off;'``) from a config
generated in a temporary directory that also holds its pid file, error log and
temp paths: ``worker_processes`` 1 by default (this is a 2-core machine and the
Python client needs the other core), ``access_log off``,
``keepalive_requests 100000`` and ``location / { return 200 'OK'; }`` (a plain
static location would answer POST with 405). It does not read the system's
``/etc/nginx`` config and loads no modules. Loopback nginx serves about
88,000 requests/s to ``wrk`` on this kind of machine (DESIGN section 4), far
above anything a Python client reaches.

If nginx is missing or does not come up, the fallback is a multi-process raw
asyncio receiver (``--workers`` processes, each with its own listening socket
bound with ``SO_REUSEPORT``, a minimal keep-alive HTTP/1.1 parser that honours
``Content-Length`` and chunked bodies and answers 200). It is slower than
nginx but still much faster than a single Python client process.

Either way the server runs in its own process group, started by this module;
it is stopped (SIGTERM, then SIGKILL of that group) on ``__exit__``, by an
``atexit`` hook and on SIGTERM/SIGINT to the benchmark, so it never outlives
the benchmark.

Endpoint verification
---------------------
The service only delivers to ``active`` endpoints, and an endpoint becomes
active when its handshake answer carries its verification token. nginx cannot
echo the token, so the benchmarks mark endpoints active directly in the store
with the core's own state machine (``mark_active``)::

    ep = await hooks.add_endpoint(rx.url("/hooks/0"))
    mark_active(hooks.store, ep, now)   # apply(HandshakeResult(now, 200, token))

``mark_active`` feeds ``webhook_core.endpoint_machine.apply(endpoint, HandshakeResult(now,
200, token.encode()))`` with the endpoint's own ``verification_token`` and saves
the result with ``store.save_endpoint``. If the driver's real handshake got
there first (the endpoint fell back to ``unverified`` because nginx answered
``OK`` instead of the token), it begins a fresh verification first. The
driver's own handshake, if still in flight, then finds the endpoint no longer
``verifying`` with that token and drops its answer. Benchmarks should
``drain()`` once after setup so that handshake POST is not timed.

Run ``python -m benchmarks.receiver`` (with ``PYTHONPATH=src``) to start one by
hand; it prints its URL and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["Blackhole", "Receiver", "find_nginx", "mark_active"]

_NGINX_CONF = """\
{user}
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 8192;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            return 200 'OK';
        }}
        location /fail/ {{
            return 500 'failing';
        }}
    }}
}}
"""

_LIVE: list[Receiver] = []


def find_nginx() -> str | None:
    """The nginx binary, or None."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(port: int, deadline: float) -> bool:
    """Wait (bounded) until a POST to the port gets a 200."""
    request = (
        b"POST /probe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}"
    )
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(request)
                data = s.recv(4096)
                if data.startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class Receiver:
    """A local receiver answering 200 to everything; see the module docstring.

    ``prefer``: "nginx" (fall back to Python if nginx is unavailable) or
    "python" (the asyncio fallback only). ``workers``: nginx worker processes,
    or Python receiver processes.
    """

    def __init__(self, prefer: str = "nginx", workers: int | None = None) -> None:
        if prefer not in ("nginx", "python"):
            raise ValueError("prefer must be 'nginx' or 'python'")
        self.prefer = prefer
        self.workers = workers
        self.kind: str | None = None
        self.port: int | None = None
        self.detail = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None
        self.problems: list[str] = []

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        _install_handlers()
        _LIVE.append(self)
        if self.prefer == "nginx":
            nginx = find_nginx()
            if nginx is None:
                self.problems.append("nginx not found")
            else:
                for _ in range(3):
                    if self._start_nginx(nginx):
                        return
        for _ in range(3):
            if self._start_python():
                return
        self.stop()
        raise RuntimeError("could not start a receiver: " + "; ".join(self.problems))

    def _spawn(self, argv: list[str], stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as one on exit
        )

    def _start_nginx(self, nginx: str) -> bool:
        workers = self.workers or 1
        tmp = tempfile.mkdtemp(prefix="bench-nginx-")
        port = _free_port()
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        conf = _NGINX_CONF.format(
            user="user root;" if is_root else "",
            workers=workers,
            tmp=tmp,
            port=port,
        )
        conf_path = os.path.join(tmp, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        log = open(os.path.join(tmp, "stderr.log"), "wb")  # noqa: SIM115
        try:
            proc = self._spawn(
                [
                    nginx,
                    "-p",
                    tmp,
                    "-c",
                    conf_path,
                    "-e",
                    os.path.join(tmp, "error.log"),
                    "-g",
                    "daemon off;",
                ],
                stdout=log,
            )
        finally:
            log.close()
        self._proc, self._tmp, self.port = proc, tmp, port
        if proc.poll() is None and _probe(port, time.monotonic() + 5.0) and proc.poll() is None:
            version = subprocess.run(
                [nginx, "-v"], capture_output=True, text=True, timeout=5, check=False
            ).stderr.strip()
            self.kind = "nginx"
            self.detail = f"{version}, {workers} worker process(es), return 200 'OK'"
            return True
        try:
            with open(os.path.join(tmp, "stderr.log")) as f:
                err = f.read().strip()
        except OSError:
            err = ""
        self.problems.append(f"nginx did not come up on port {port}: {err[-300:]}")
        self._kill()
        return False

    def _start_python(self) -> bool:
        workers = self.workers or 2
        port = _free_port()
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.dirname(here), env.get("PYTHONPATH", "")) if p
        )
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.receiver",
                "--serve-python",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self.port = port
        if _probe(port, time.monotonic() + 10.0) and self._proc.poll() is None:
            self.kind = "python"
            self.detail = f"raw asyncio, {workers} process(es) with SO_REUSEPORT"
            return True
        self.problems.append(f"python receiver did not come up on port {port}")
        self._kill()
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
            # The group is the one started for this receiver (start_new_session):
            # make sure no worker process survives its master.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        self._kill()
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)

    # -- addresses ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the receiver has not started")
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The receiver's URL for ``path``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def describe(self) -> str:
        return f"{self.kind} ({self.detail}) at {self.base_url}"


def _stop_all() -> None:
    for rx in list(_LIVE):
        rx.stop()


_handlers_installed: list[bool] = []


def _install_handlers() -> None:
    if _handlers_installed:
        return
    _handlers_installed.append(True)
    atexit.register(_stop_all)

    def on_signal(signum: int, frame: object) -> None:
        _stop_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not in the main thread
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, on_signal)


class Blackhole:
    """A port on 127.0.0.1 that takes connections and never answers: an endpoint timing out.

    The socket listens but never accepts, so the kernel completes handshakes
    (up to the backlog) and buffers requests, and no response ever comes.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4096)
        self.port = int(self._sock.getsockname()[1])

    def url(self, path: str = "/dead") -> str:
        """The blackhole's URL for ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- marking endpoints active ------------------------------------------------


def mark_active(store: Any, endpoint: Any, now: float) -> Any:
    """Make ``endpoint`` active in ``store`` as if its handshake had succeeded.

    Feeds the core's ``HandshakeResult(now, 200, token)`` with the endpoint's own
    verification token (beginning a fresh verification first if the endpoint is
    no longer ``verifying``) and saves the result. Returns the active endpoint.
    """
    from webhook_core import BeginVerification, EndpointState, HandshakeResult, endpoint_machine

    current = store.get_endpoint(endpoint.id) or endpoint
    if current.state is EndpointState.ACTIVE:
        return current
    if current.state is not EndpointState.VERIFYING or not current.verification_token:
        current = endpoint_machine.apply(
            current, BeginVerification("benchmark-" + os.urandom(8).hex(), now)
        )
    token = current.verification_token
    assert token is not None
    active = endpoint_machine.apply(current, HandshakeResult(now, 200, token.encode()))
    assert active.state is EndpointState.ACTIVE, active
    store.save_endpoint(active)
    return active


# -- the Python fallback server ----------------------------------------------

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nOK"
)
_FAILURE = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 7\r\nConnection: keep-alive\r\n\r\nfailing"
)
_MAX_HEAD = 64 * 1024


class _Http(asyncio.Protocol):
    """Minimal HTTP/1.1: pipelining-safe, sized and chunked bodies; 200, or 500 under /fail/."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        close = False
        while not close:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    close = True
                break
            head = bytes(buf[:end]).lower()
            pos = end + 4
            close = b"\r\nconnection: close" in head
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                pos += int(head[i + 17 : j if j >= 0 else None])
                if len(buf) < pos:
                    close = False
                    break
            elif b"\r\ntransfer-encoding: chunked" in head:
                done = _chunked_end(buf, pos)
                if done is None:
                    close = False
                    break
                pos = done
            out.append(_FAILURE if buf.startswith(b"POST /fail/") else _RESPONSE)
            del buf[:pos]
        if out:
            self.t.write(b"".join(out))
        if close:
            self.t.close()


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    """Index after a complete chunked body starting at ``pos``, or None if incomplete."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            return None if trailer_end < 0 else trailer_end + 4
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


def _serve_one(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    sock.setblocking(False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Http, sock=sock)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _serve_python(port: int, workers: int) -> None:
    parent = os.getppid()
    children = []
    for _ in range(max(1, workers) - 1):
        pid = os.fork()
        if pid == 0:
            _serve_one(port)
            os._exit(0)
        children.append(pid)

    def stop_children() -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def on_term(*_: object) -> None:
        stop_children()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    # Also exit if the benchmark that started us died without stopping us.
    import threading

    def watch_parent() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                stop_children()
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    _serve_one(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefer", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve-python", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_python:
        _serve_python(args.port, args.workers or 2)
        return
    with Receiver(prefer=args.prefer, workers=args.workers) as rx:
        print(f"receiver: {rx.describe()}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
