"""A point-to-point link with a fixed one-way delay, for kernels built without sch_netem.

    python -m testkit.delay_line NS_A DEV_A NS_B DEV_B DELAY_MS

Creates a TUN device DEV_A inside network namespace NS_A and DEV_B inside NS_B (from
this one process: it enters each namespace in turn to open the device, then returns),
prints "ready", and carries every packet read from one device to the other DELAY_MS
later, each direction in order. The devices live as long as this process: its end (it
dies with the process that started it) takes the link down with it. The kernel's own
TCP runs over it, so round trips, slow start and the rate limit (a `tbf` qdisc on each
device, set by testkit.netns) behave as on a real link with that latency.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import os
import select
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


def enter(namespace_file: str) -> None:
    """This thread into the network namespace `namespace_file` names."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(namespace_file, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace_file}")
    finally:
        os.close(fd)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def carry(a: int, b: int, delay: float) -> None:
    """Forever: what one device sends reaches the other `delay` seconds later."""
    waiting: dict[int, collections.deque[tuple[float, bytes]]] = {
        a: collections.deque(),
        b: collections.deque(),
    }  # keyed by the device the packet goes out of
    other = {a: b, b: a}
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in waiting.values() if q]
        timeout = max(0.0, min(due) - now) if due else None
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                waiting[other[fd]].append((now + delay, packet))
        for fd, queue in waiting.items():
            while queue and queue[0][0] <= now:
                # The device down (a test cut the link): the packet is lost.
                with contextlib.suppress(OSError):
                    os.write(fd, queue.popleft()[1])


def main() -> None:
    ns_a, dev_a, ns_b, dev_b, delay_ms = sys.argv[1:6]
    home = "/proc/thread-self/ns/net"
    back = os.open(home, os.O_RDONLY)
    enter(f"/run/netns/{ns_a}")
    a = open_tun(dev_a)
    enter(f"/run/netns/{ns_b}")
    b = open_tun(dev_b)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.setns(back, CLONE_NEWNET)
    os.close(back)
    print("ready", flush=True)
    carry(a, b, float(delay_ms) / 1000)


if __name__ == "__main__":
    main()
