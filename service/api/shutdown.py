"""Graceful shutdown of one worker: stop accepting, tell keep-alive clients, finish, exit 0.

uvicorn's own shutdown closes every idle keep-alive connection at once: a client that sends its
next request on one at that moment gets a reset (``ECONNRESET``) instead of an answer. Here, on
SIGTERM (or SIGINT) a worker:

1. stops accepting at once (from the signal handler, not at the server's next tick): closes its
   listening sockets, so a new connection is refused, never reset. With several workers the
   master closed its copy first (:mod:`service.api.supervisor`) and every worker waits
   ``SETTLE_S`` before it tells clients to reconnect: a client told by one worker must not land
   in the accept queue of another that is about to close it (those connections are reset);
2. drains for up to ``drain_s``: connections stay open and every answer carries
   ``Connection: close`` (:class:`CloseWhenDraining`), so a keep-alive client's next request is
   still answered and the client then moves to another replica; in-flight requests go on;
3. then closes the idle connections, waits for the in-flight requests until ``grace_s`` has passed
   since the signal, runs the app's shutdown (stores closed) and exits with status 0 (uvicorn
   re-raises the signal, which makes the exit status "killed by SIGTERM").

SIGHUP reloads the bundle (:func:`service.api.reload.hangup`) instead of restarting anything.
Kubernetes: ``terminationGracePeriodSeconds`` must cover the ``preStop`` sleep plus ``grace_s``
(deploy/k8s/deployment.yaml).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import balance
from service.api.reload import hangup

log = logging.getLogger("ccrl.shutdown")

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

SETTLE_S = 0.25
"""With several workers: from closing the listening socket to the first ``Connection: close``."""

DRAINING = threading.Event()
"""Set in a worker from the moment it starts its graceful shutdown."""


class CloseWhenDraining:
    """Pure ASGI middleware: ``Connection: close`` on every answer started while draining."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and DRAINING.is_set():
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class GracefulServer(uvicorn.Server):
    """uvicorn's server with the shutdown above, SIGHUP as a reload and exit status 0.

    Args:
        config: the uvicorn config (``timeout_graceful_shutdown`` is replaced by ``grace_s``).
        grace_s: seconds from the signal to the end of the in-flight requests.
        drain_s: seconds (within ``grace_s``) that connections stay open answering with
            ``Connection: close``.
    """

    def __init__(self, config: uvicorn.Config, *, grace_s: float, drain_s: float) -> None:
        super().__init__(config)
        self.grace_s = float(grace_s)
        self.drain_s = min(float(drain_s), self.grace_s)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers = {sig: signal.signal(sig, self.handle_exit) for sig in EXIT_SIGNALS}
        handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hangup)
        try:
            yield
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._loop = asyncio.get_running_loop()
        share = balance.current()
        if share is not None and not self.should_exit:
            share.ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the graceful shutdown (a second SIGINT forces it); the signal is not re-raised."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            return
        self.should_exit = True
        share = balance.current()
        if share is not None:
            share.retire()  # no connection is moved towards a worker that stops
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._stop_accepting)

    def _stop_accepting(self) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # closes its listening socket

    def _hangup(self, sig: int, frame: FrameType | None) -> None:
        threading.Thread(target=hangup, name="ccrl-hangup", daemon=True).start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        start = time.monotonic()
        self._stop_accepting()
        for sock in sockets or []:
            sock.close()
        if sockets:  # several workers: let the others close their copies first
            await asyncio.sleep(SETTLE_S)
        DRAINING.set()
        log.info(
            "draining: %d connection(s) open, answering with Connection: close for up to %.1fs",
            len(self.server_state.connections),
            self.drain_s,
        )
        while (
            self.server_state.connections
            and not self.force_exit
            and time.monotonic() - start < self.drain_s
        ):
            await asyncio.sleep(0.05)
        left = self.grace_s - (time.monotonic() - start)
        self.config.timeout_graceful_shutdown = max(0.1, left)  # type: ignore[assignment]
        await super().shutdown(sockets=None)
