"""HTTP/2 requests through libcurl's multi interface (pycurl), driven by the event loop.

Why: APNs speaks only HTTP/2, and every Python HTTP/2 client frames in pure Python (`h2`).
aioapns costs ~0.26 CPU s per 1,000 requests here; libcurl, which frames in C (nghttp2)
and multiplexes the requests of one host on one connection, ~0.06 against the same emulator
(bench/README.md). libcurl does the I/O; this module only tells it, through the loop's
readers and writers and one timer, when a socket is ready or a timeout is due, and turns
each finished transfer into the result of a future.

Every callback runs on the loop's thread inside `socket_action`, so no locking is needed.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pycurl

# Transfer handles kept for reuse (each holds its connection cache entry and TLS settings).
_SPARE_HANDLES: Final = 256


@dataclass(frozen=True)
class Answer:
    """A finished request: its HTTP status and body."""

    status: int
    body: bytes


# Names of the transfer errors a sender reports as the reason of a retry.
_REASONS: Final = {
    pycurl.E_COULDNT_RESOLVE_HOST: "HostNotFound",
    pycurl.E_COULDNT_CONNECT: "ConnectionRefused",
    pycurl.E_OPERATION_TIMEDOUT: "Timeout",
    pycurl.E_SSL_CONNECT_ERROR: "TLSFailed",
    pycurl.E_PEER_FAILED_VERIFICATION: "UntrustedServer",
    pycurl.E_SEND_ERROR: "ConnectionReset",
    pycurl.E_RECV_ERROR: "ConnectionReset",
    pycurl.E_GOT_NOTHING: "ConnectionReset",
    pycurl.E_HTTP2: "HTTP2Error",
    # CURLE_HTTP2_STREAM, which pycurl does not name.
    92: "HTTP2StreamError",
}

# Transfer errors before any byte of the request was sent: the server cannot have it.
_UNSENT: Final = frozenset(
    {
        pycurl.E_COULDNT_RESOLVE_HOST,
        pycurl.E_COULDNT_CONNECT,
        pycurl.E_SSL_CONNECT_ERROR,
        pycurl.E_PEER_FAILED_VERIFICATION,
    }
)


class TransferError(Exception):
    """No answer: libcurl's error code (`pycurl.E_*`) and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        """A short name of what went wrong."""
        return _REASONS.get(self.code, f"TransferError{self.code}")

    @property
    def maybe_delivered(self) -> bool:
        """Whether the server may have received the request although no answer came."""
        return self.code not in _UNSENT


class Multi:
    """A libcurl multi handle on the running loop: HTTP/2 over TLS, the requests to one
    host multiplexed on at most `connections` connections.

    `ca_blob` is the PEM bundle the server must chain to. Open it inside the loop it serves;
    `close` releases every socket and handle.
    """

    def __init__(self, ca_blob: bytes, *, connections: int, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._ca_blob = ca_blob
        self._timeout_ms = int(timeout * 1000)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, connections)
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._timer: asyncio.TimerHandle | None = None
        self._watched: set[int] = set()
        self._running: dict[pycurl.Curl, tuple[asyncio.Future[Answer], io.BytesIO]] = {}
        self._spare: list[pycurl.Curl] = []

    async def post(self, url: str, headers: Sequence[str], body: bytes) -> Answer:
        """POST `body` to `url` with `headers` ("name: value"). Raises TransferError when
        no answer came (connection refused or reset, TLS refused, timeout)."""
        handle = self._spare.pop() if self._spare else self._handle()
        sink = io.BytesIO()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.HTTPHEADER, list(headers))
        handle.setopt(pycurl.POSTFIELDS, body)
        handle.setopt(pycurl.WRITEDATA, sink)
        done: asyncio.Future[Answer] = self._loop.create_future()
        self._running[handle] = (done, sink)
        self._multi.add_handle(handle)
        self._act(pycurl.SOCKET_TIMEOUT, 0)
        try:
            return await done
        finally:
            # Still ours and running: cancelled while on the wire, take it off the
            # connection. (A finished handle may already run another request.)
            if self._running.get(handle, (None,))[0] is done:
                del self._running[handle]
                self._multi.remove_handle(handle)
                handle.close()

    def close(self) -> None:
        """Abort what is running and release every socket and handle."""
        if self._timer is not None:
            self._timer.cancel()
        for handle, (done, _) in list(self._running.items()):
            self._multi.remove_handle(handle)
            handle.close()
            if not done.done():
                done.set_exception(TransferError(pycurl.E_ABORTED_BY_CALLBACK, "closed"))
        self._running.clear()
        for handle in self._spare:
            handle.close()
        self._spare.clear()
        self._multi.close()
        for socket in self._watched:
            self._loop.remove_reader(socket)
            self._loop.remove_writer(socket)
        self._watched.clear()

    def _handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        handle.setopt(pycurl.CAINFO_BLOB, self._ca_blob)
        # Wait for a connection that multiplexes rather than opening one per request.
        handle.setopt(pycurl.PIPEWAIT, 1)
        handle.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        handle.setopt(pycurl.NOSIGNAL, 1)
        # Proxies from the environment would connect on our behalf.
        handle.setopt(pycurl.NOPROXY, "*")
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        return handle

    def _on_socket(self, what: int, socket: int, multi: object, data: object) -> None:
        loop = self._loop
        if what == pycurl.POLL_REMOVE:
            loop.remove_reader(socket)
            loop.remove_writer(socket)
            self._watched.discard(socket)
            return
        self._watched.add(socket)
        if what in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            loop.add_reader(socket, self._act, socket, pycurl.CSELECT_IN)
        else:
            loop.remove_reader(socket)
        if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            loop.add_writer(socket, self._act, socket, pycurl.CSELECT_OUT)
        else:
            loop.remove_writer(socket)

    def _on_timer(self, milliseconds: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if milliseconds >= 0:
            self._timer = self._loop.call_later(
                milliseconds / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0
            )

    def _act(self, socket: int, events: int) -> None:
        self._multi.socket_action(socket, events)
        while True:
            queued, finished, failed = self._multi.info_read()
            for handle in finished:
                self._finish(handle, None)
            for handle, code, message in failed:
                self._finish(handle, TransferError(code, message))
            if not queued:
                return

    def _finish(self, handle: pycurl.Curl, error: TransferError | None) -> None:
        self._multi.remove_handle(handle)
        done, sink = self._running.pop(handle)
        # A waiter cancelled in this same loop turn has left the future done.
        if not done.done():
            if error is None:
                done.set_result(Answer(handle.getinfo(pycurl.RESPONSE_CODE), sink.getvalue()))
            else:
                done.set_exception(error)
        if len(self._spare) < _SPARE_HANDLES:
            self._spare.append(handle)
        else:
            handle.close()
