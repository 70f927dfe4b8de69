"""Run a command in a network namespace whose only ways out are the mirror's services.

`unshare -n` gives a process a fresh network namespace: a loopback interface (down) and
nothing else. The mirror's services (nginx, a web front, devpi) listen in the host's
namespace, which that process cannot reach. So we bridge through the filesystem, which
both share: the host side accepts on a Unix socket per service and connects to it;
inside the namespace, this module brings loopback up, listens at each service's own
loopback address and port (any of 127.0.0.0/8 is local once lo is up) and forwards
each connection to that service's Unix socket. pip inside then sees each service at
its usual address, a front's redirect to devpi included, and nothing else at all.

    unshare -n python -m verify.netns UNIX_PATH HOST:PORT [UNIX_PATH HOST:PORT ...] -- COMMAND...
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from mirror.core.children import die_with_parent, python_module
from mirror.core.scratch import forget, remember

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(1 << 16):
            dst.sendall(data)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _splice(a: socket.socket, b: socket.socket) -> None:
    threading.Thread(target=_pump, args=(a, b), daemon=True).start()
    threading.Thread(target=_pump, args=(b, a), daemon=True).start()


class HostBridge:
    """Host side: a Unix socket whose every connection is forwarded to (host, port)."""

    def __init__(self, path: Path, host: str, port: int) -> None:
        self.path, self.target = path, (host, port)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        remember(path)  # removed by a stop that comes before close()
        self.sock.listen(256)  # uv opens dozens of connections at once
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            _splice(client, upstream)

    def close(self) -> None:
        # shutdown wakes the accept() blocked in _serve; close alone would not, and the
        # thread would outlive the bridge.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.path.unlink(missing_ok=True)
        forget(self.path)


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def inside(bridges: list[tuple[str, str, int]], command: list[str]) -> int:
    """`bridges`: (Unix socket path, loopback address, port) of each service."""
    loopback_up()
    for unix_path, host, port in bridges:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(256)
        threading.Thread(target=_forward, args=(listener, unix_path), daemon=True).start()
    return subprocess.call(command, preexec_fn=die_with_parent)


def _forward(listener: socket.socket, unix_path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(unix_path)
        _splice(client, upstream)


def wrap(command: list[str], bridges: list[tuple[Path, str, int]]) -> list[str]:
    """The command line that runs `command` inside a fresh namespace behind the bridges."""
    specs = [arg for path, host, port in bridges for arg in (str(path), f"{host}:{port}")]
    return ["unshare", "-n", *python_module("verify.netns"), *specs, "--", *command]


def can_unshare() -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.call(["unshare", "-n", "true"], stderr=subprocess.DEVNULL) == 0


def _parse(argv: list[str]) -> tuple[list[tuple[str, str, int]], list[str]]:
    separator = argv.index("--")
    specs = argv[:separator]
    bridges = []
    for unix_path, address in zip(specs[::2], specs[1::2], strict=True):
        host, port = address.rsplit(":", 1)
        bridges.append((unix_path, host, int(port)))
    return bridges, argv[separator + 1 :]


if __name__ == "__main__":
    sys.exit(inside(*_parse(sys.argv[1:])))
