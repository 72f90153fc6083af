"""Connection balance across the workers of ``ccrl serve`` (several workers only).

Every worker accepts on the one listening socket, and a keep-alive connection stays with the worker
that accepted it. With a few long-lived connections (a load generator's, a proxy's or a client
library's pool) the kernel's accept order can put three of four on one worker while the other
idles: that worker is then offered more than a core and its queue, not the scorer, sets the tail
(loadtests/README.md). This module keeps the open-connection counts of all workers level, the way
Envoy's ``exact_balance`` does for its threads, but without moving sockets between processes:

- the master (:mod:`service.api.supervisor`) owns one shared array with a slot per worker; a
  worker's slot is ``NOT_READY`` until it serves, then its number of open connections (each slot
  has one writer, its worker's event loop, so no lock is needed);
- when a request starts on a worker that holds at least two connections more than the least busy
  ready worker (counting those it already asked to leave as moved there), its answer carries
  ``Connection: close``. The client reconnects; the new connection goes to whichever worker
  accepts first, which is most often the idle one. Should it land on the busy one again, the
  next request there moves it once more. A level spread (2 and 2, or 3 and 2) moves nothing.

``CCRL_BALANCE_CONNECTIONS=false`` turns it off (one worker never balances).
"""

from __future__ import annotations

import logging
from collections.abc import MutableSequence

log = logging.getLogger("ccrl.balance")

NOT_READY = -1
"""A slot's value while its worker starts (or after it died): left out of the comparison."""

MOVE_GAP = 2
"""A connection moves when its worker holds this many more than the least busy ready worker."""


class ConnectionBalance:
    """One worker's view of the shared connection counts.

    Args:
        counts: the shared slots (a ``multiprocessing`` RawArray of C longs, length = workers).
        index: this worker's slot.
    """

    def __init__(self, counts: MutableSequence[int], index: int) -> None:
        self.counts = counts
        self.index = index
        self.open = 0  # this worker's open connections
        self.leaving = 0  # connections told to close, not yet closed
        self.moved = 0  # connections moved since start (for the log and the tests)
        self.serving = False

    def ready(self) -> None:
        """This worker accepts: its slot counts its connections from now on."""
        self.serving = True
        self.counts[self.index] = self.open

    def retire(self) -> None:
        """This worker stops accepting (shutdown): no connection is sent its way any more."""
        self.serving = False
        self.counts[self.index] = NOT_READY
        if self.moved:
            log.info(
                "worker %d moved %d connection(s) to even out the workers", self.index, self.moved
            )

    def opened(self) -> None:
        """A connection was accepted by this worker."""
        self.open += 1
        self._publish()

    def closed(self, *, was_leaving: bool) -> None:
        """A connection of this worker closed (``was_leaving``: one counted by :meth:`leave`)."""
        self.open = max(self.open - 1, 0)
        if was_leaving:
            self.leaving = max(self.leaving - 1, 0)
        self._publish()

    def _publish(self) -> None:
        if self.serving:
            self.counts[self.index] = self.open

    def should_move(self) -> bool:
        """True when this worker holds ``MOVE_GAP`` more connections than the least busy ready
        worker, counting the connections already leaving as if they had reached that worker; the
        caller then closes one after its answer and calls :meth:`leave`."""
        ready = [c for i, c in enumerate(self.counts) if i != self.index and c != NOT_READY]
        if not self.serving or not ready:
            return False
        staying = self.open - self.leaving
        return staying - (min(ready) + self.leaving) >= MOVE_GAP  # as if those leaving land there

    def leave(self, *, moved: bool) -> None:
        """Count a connection that closes after its current answer (``moved``: chosen by
        :meth:`should_move`, else by the per-connection request cap)."""
        self.leaving += 1
        if moved:
            self.moved += 1
            log.debug("worker %d: a connection moves (%d so far)", self.index, self.moved)


_CURRENT: ConnectionBalance | None = None


def install(counts: MutableSequence[int] | None, index: int) -> None:
    """Make this process a balanced worker (``counts`` None: no balance); called once per worker,
    before its server starts."""
    global _CURRENT
    _CURRENT = ConnectionBalance(counts, index) if counts is not None else None


def current() -> ConnectionBalance | None:
    """This worker's balance, or None (one worker, or balance off)."""
    return _CURRENT
