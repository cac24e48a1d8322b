"""A deadline on request headers: a connection whose request headers are not complete `header_read_timeout_s` after
it opened (or after the first byte of a later request on it) is answered 408 and closed.

uvicorn closes idle kept-alive connections (`timeout_keep_alive`) but never one that sends the headers of a request
byte by byte: such a client (slowloris) holds its connection for as long as it likes, and enough of them hold every
connection the server accepts (`max_connections`). Bodies have their own deadline (intake.py); this is the headers'.

Nothing is added to a request's path: no timer, no clock read. A sweep a few times per deadline looks at the
server's connections and reads the state uvicorn's HTTP protocol keeps anyway: a connection waits for headers while
its current request has no request-response cycle yet. A wait is known by the cycle before it, so one that goes on
from one sweep to the next is the same wait; it is cut once it has lasted the deadline (measured from the sweep that
first saw it: cut between one and one and a bit deadlines after it began).

A cut connection is closed the way nginx's lingering close does it: the 408, then our end of the stream, then what
the client still sends is read and dropped until it closes too (or LINGER_S pass). Closing a socket that has unread
bytes (a slowloris sends one every moment) sends a reset, which can reach the client before the 408 and lose it.
"""

from __future__ import annotations

import asyncio
import http

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

# Sweeps per deadline: a wait is cut at most a tenth of the deadline (and one sweep) late.
SWEEPS_PER_DEADLINE = 10
_MESSAGE = b"the request headers did not arrive in time"
# How long a cut connection is read and dropped, waiting for the client to close it, before it is closed anyway.
LINGER_S = 2.0


class HeaderDeadline:
    def __init__(self, server_state: ServerState, deadline_s: float) -> None:
        self._state = server_state
        self.deadline_s = deadline_s
        # The waits seen by the last sweep: connection -> (the cycle before the wait, when the wait was first seen).
        self._waits: dict[HttpToolsProtocol, tuple[RequestResponseCycle | None, float]] = {}

    async def enforce(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.deadline_s / SWEEPS_PER_DEADLINE)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        waits: dict[HttpToolsProtocol, tuple[RequestResponseCycle | None, float]] = {}
        for connection in list(self._state.connections):
            if not isinstance(connection, HttpToolsProtocol) or not _waits_for_headers(connection):
                continue
            before, seen = self._waits.get(connection, (connection.cycle, now))
            if before is not connection.cycle:  # the wait seen last time ended; this is another one
                seen = now
            if now - seen >= self.deadline_s:
                self._cut(connection)
            else:
                waits[connection] = (connection.cycle, seen)
        self._waits = waits

    def _cut(self, connection: HttpToolsProtocol) -> None:
        transport = connection.transport
        if connection.scope is not None:  # it sent part of a request: tell it why
            lines = [b"HTTP/1.1 408 " + http.HTTPStatus.REQUEST_TIMEOUT.phrase.encode()]
            lines += [name + b": " + value for name, value in self._state.default_headers]
            lines += [
                b"content-type: text/plain; charset=utf-8",
                b"content-length: " + str(len(_MESSAGE)).encode(),
                b"connection: close",
            ]
            transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + _MESSAGE)
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        transport.set_protocol(_Lingering(transport))
        # uvicorn forgets the connection as if the client had gone; given an error, it leaves the transport open.
        connection.connection_lost(ConnectionAbortedError("the request headers did not arrive in time"))
        transport.write_eof()


class _Lingering(asyncio.Protocol):
    """A cut connection's last moments: what the client still sends is dropped until it closes or LINGER_S pass."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._closing = asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        """Returning None lets asyncio close the transport: the client has closed its end."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing.cancel()


def _waits_for_headers(connection: HttpToolsProtocol) -> bool:
    """A new connection, or one whose next request has begun (`on_message_begin` made a new scope) but whose headers
    have not ended (`on_headers_complete` makes the cycle, sharing that scope). A connection still answering its
    previous request is not waiting: a pipelined request's wait starts once that answer is complete. Idle between
    requests is not waiting either: uvicorn's keep-alive timeout covers it."""
    if connection.transport.is_closing():
        return False
    cycle = connection.cycle
    if cycle is None:
        return True
    return cycle.response_complete and cycle.scope is not connection.scope
