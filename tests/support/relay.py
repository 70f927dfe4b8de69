"""A TCP relay on a loopback port that a test can cut and restore: an endpoint that
disappears mid-transfer (every connection reset, new ones refused) and comes back with
its state intact, which stopping the real server (moto keeps buckets in memory) cannot."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Self

from testkit.servers import free_port


class Relay:
    def __init__(self, target_port: int, request_delay: float = 0) -> None:
        self.target = ("127.0.0.1", target_port)
        # Each request held this long before it reaches the target (a slow link): requests
        # a test makes at once are surely in flight together.
        self.request_delay = request_delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._budget: int | None = None  # client bytes to pass before cutting itself

    def __enter__(self) -> Self:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut_after(self, client_bytes: int) -> None:
        """Vanish once clients have sent this many more bytes: mid-upload, exactly."""
        with self._lock:
            self._budget = client_bytes

    def _spend(self, n: int) -> bool:
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= n
            if self._budget > 0:
                return False
            self._budget = None
        self.cut()
        return True

    def cut(self) -> None:
        """Reset every open connection and stop listening."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, []
        if listener is not None:
            # close() alone leaves a socket blocked in accept() listening; shutdown wakes it.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in doomed:
            with contextlib.suppress(OSError):  # already closed by its pipe
                # linger 0: close sends RST, as a vanished host's network would
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b, upload in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, upload), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        try:
            while data := src.recv(65536):
                if upload and self._spend(len(data)):
                    return
                if upload and self.request_delay:
                    time.sleep(self.request_delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):  # the other side closed it first
                    sock.shutdown(socket.SHUT_RDWR)
