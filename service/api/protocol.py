"""The HTTP/1.1 protocol ``ccrl serve`` runs: uvicorn's h11 protocol plus read deadlines.

Why h11: it bounds the request head (``h11_max_incomplete_event_size``: a head over
``CCRL_MAX_HEADER_BYTES`` is refused while it arrives, so a 64 MB header costs nothing), where the
httptools parser takes any size. Neither of uvicorn's protocols has read timeouts, so this module
adds two per connection, on the event loop (timer handles, no task per connection):

- the **head deadline** (``CCRL_HEADER_TIMEOUT_S``): from the moment the server waits for a request
  (connection open, or the first byte after a keep-alive pause) to the end of its head;
- the **body deadline** (``CCRL_BODY_TIMEOUT_S``): from the end of the head to the end of the body,
  so a body that stops short of its ``Content-Length`` (or trickles) is dropped after it, also
  when the route already answered without reading it.

It also caps the requests of one connection (``CCRL_KEEP_ALIVE_REQUESTS``, as nginx's
``keepalive_requests``): the last answer carries ``Connection: close``. A keep-alive connection
stays with the worker that accepted it, so a few long-lived connections (a load generator's, a
proxy's pool) can pile onto one worker while another idles; reconnecting every N requests lets the
accept queue hand the new connection to a worker that is waiting for work (loadtests/README.md).
With several workers it also keeps their connection counts level (:mod:`service.api.balance`): a
request that starts on a worker holding two connections more than another gets the same
``Connection: close``.

A connection past a deadline gets a JSON 408 (when no answer was started) and is closed; the app
sees a client disconnect, which it answers quietly (no traceback). Idle keep-alive connections are
closed by uvicorn's ``timeout_keep_alive``; the connection cap is uvicorn's ``limit_concurrency``.
Both are set by :func:`service.api.server.uvicorn_limits`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.balance import current as current_balance

log = logging.getLogger("ccrl.protocol")

PROTOCOL = "service.api.protocol:GuardedH11Protocol"
"""The ``http=`` value for uvicorn (an import string, so that spawned workers import it too)."""


@dataclass(frozen=True)
class ReadLimits:
    """The read deadlines of one connection, in seconds."""

    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    keep_alive_requests: int = 0


@functools.cache
def process_limits() -> ReadLimits:
    """The limits from this process's settings (the environment, read once per worker)."""
    from service.config import Settings

    s = Settings()
    return ReadLimits(
        s.header_timeout_s, s.body_timeout_s, s.max_header_bytes, s.keep_alive_requests
    )


def raw_error(status: int, reason: str, detail: str, code: str) -> bytes:
    """A whole HTTP/1.1 error answer (JSON ``{detail, error}``, ``Connection: close``) as bytes,
    for the moments when h11 cannot send one (no request head yet, or a broken request)."""
    body = json.dumps({"detail": detail, "error": code}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _close_after(cycle: Any) -> None:
    """Make ``cycle``'s answer carry ``Connection: close`` (h11 then closes the connection after
    it). Set before the cycle's task first runs, so the app is handed the wrapped ``send``."""
    send = cycle.send

    async def send_closing(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if (b"connection", b"close") not in headers:
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    cycle.send = send_closing


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head and body deadlines above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = process_limits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._timed_cycle: object | None = None
        self._counted_cycle: object | None = None
        self._requests = 0
        self._leaving = False  # this connection closes after its current answer
        self._balance = current_balance()

    # ------------------------------------------------------------------ protocol hooks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._balance is not None:
            self._balance.opened()
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head()  # the first byte of a request after a keep-alive pause
        super().data_received(data)
        self._track()

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is None or cycle is self._counted_cycle:
            return
        self._counted_cycle = cycle
        self._requests += 1
        if self._leaving:
            return
        cap = self.limits.keep_alive_requests
        capped = bool(cap) and self._requests >= cap
        moved = not capped and self._balance is not None and self._balance.should_move()
        if capped or moved:
            _close_after(cycle)
            self._leaving = True
            if self._balance is not None:
                self._balance.leave(moved=moved)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()  # a pipelined request may have started

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._balance is not None:
            self._balance.closed(was_leaving=self._leaving)
            self._balance = None  # counted once, however often uvicorn calls this
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (or a head over the limit): JSON 400, then close."""
        detail = (
            f"invalid HTTP request (malformed, or a request head over "
            f"{self.limits.max_header_bytes} bytes)"
        )
        if not self.transport.is_closing():
            self.transport.write(raw_error(400, "Bad Request", detail, "bad_request"))
            self.transport.close()

    # ------------------------------------------------------------------ deadlines
    def _arm_head(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _track(self) -> None:
        """Stop the head deadline once a head is in; start the body deadline of a new request."""
        state = self.conn.their_state
        if state is not h11.IDLE and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if state is h11.SEND_BODY and self.cycle is not self._timed_cycle:
            if self._body_timer is not None:
                self._body_timer.cancel()
            self._timed_cycle = self.cycle
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_late)
        elif state is not h11.SEND_BODY and self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._drop(f"no complete request head within {self.limits.header_timeout_s:g} s")

    def _body_late(self) -> None:
        self._body_timer = None
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._drop(f"the request body did not arrive within {self.limits.body_timeout_s:g} s")

    def _drop(self, why: str) -> None:
        """408 (unless an answer was started) and close; the app sees a disconnect."""
        prefix = "%s:%d - " % self.client if self.client else ""  # noqa: UP031 - uvicorn's style
        log.info("%sclosing the connection: %s", prefix, why)
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(raw_error(408, "Request Timeout", why, "request_timeout"))
        if cycle is not None:  # the app's receive() now says http.disconnect; its send() no-ops
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
