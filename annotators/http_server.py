"""A Starlette app on a real port of this machine, served by uvicorn from a thread or in the foreground.

Used by the mock LLM and by the Label Studio webhook receiver.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from distill_ner.data.errors import DistillError


class BackgroundServer:
    """Serve `app` on `host:port` (port 0: a free one): `start()`/`stop()` from a daemon thread, or `run()`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "server") -> None:
        self.app, self.host, self.port, self.name = app, host, port, name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> socket.socket:
        """Bind the socket now (so that `port` is known before serving); a busy port is a one-line error."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else delayed ACKs cost 40 ms an answer
        try:
            sock.bind((self.host, self.port))
        except OSError as err:
            raise DistillError(f"{self.name}: cannot listen on {self.host}:{self.port} ({err.strerror})") from None
        self.port = sock.getsockname()[1]
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", backlog=2048)
        return uvicorn.Server(config)

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Serve from a daemon thread; returns once the server is up."""
        sock = self.bind()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=self.name)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise DistillError(f"{self.name} did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def run(self, sock: socket.socket | None = None) -> None:
        """Serve in the foreground until interrupted (Ctrl-C)."""
        self._server = self._uvicorn()
        self._server.run(sockets=[sock or self.bind()])

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
