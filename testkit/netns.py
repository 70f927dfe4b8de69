"""Network namespaces joined by emulated WAN links, for tests and benches of mirrors at
several sites: each mirror a real process in a namespace of its own, the links between
them slowed down (a one-way delay and a rate limit), every address one this module
creates (10.231.N.0/30 per link; they never leave the namespaces).

    with Lab() as lab:
        centre, site = lab.namespace("centre"), lab.namespace("site")
        here, there = lab.link(centre, site, delay_ms=20, rate_mbit=50)
        proc = lab.popen(site, ["curl", f"http://{here}:8000/"])

A link is a veth pair with `tc netem delay ... rate ...` where the kernel has sch_netem;
where it has not (some VM kernels), a TUN pair carried by testkit.delay_line for the
delay and `tbf` for the rate. Everything is removed when the block ends, and at exit if
the process ends otherwise; what runs inside a namespace dies with the process that
started it. Not root, or no `ip netns`: `unavailable()` says why, for a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from mirror.core.children import die_with_parent

MAX_NAMESPACES = 8  # a lab is a handful of sites, never a fleet
COMMAND_SECONDS = 20  # any `ip`/`tc` call; a hung one fails the lab, not the whole run
CLONE_NEWNET = 0x40000000
_LIVE: set[str] = set()  # every namespace this process made and has not removed yet


def unavailable() -> str:
    """Why a lab cannot be built here ("" if it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (`ip`, `tc`)"
    probe = f"tfmprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _remove(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_SECONDS)
    _LIVE.discard(name)


@atexit.register
def _remove_all() -> None:
    for name in list(_LIVE):
        _remove(name)


def _netem_available(ns: str, dev: str) -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem"],
        capture_output=True,
        timeout=COMMAND_SECONDS,
    )
    if done.returncode == 0:
        subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"])
    return done.returncode == 0


class Lab:
    """Namespaces and links, all gone when the `with` block ends."""

    def __init__(self, prefix: str = "tfm") -> None:
        self.prefix = f"{prefix}{os.getpid()}"
        self.namespaces: list[str] = []
        self.links: list[tuple[str, str, str, str]] = []  # ns, dev, ns, dev
        self.emulation = ""  # "netem" or "delay line + tbf", once a link exists
        self._procs: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, short: str) -> str:
        if len(self.namespaces) >= MAX_NAMESPACES:
            raise RuntimeError(f"a lab holds at most {MAX_NAMESPACES} namespaces")
        name = f"{self.prefix}{short}"[:32]
        _ip("netns", "add", name)
        _LIVE.add(name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, b: str, delay_ms: float, rate_mbit: float) -> tuple[str, str]:
        """A link between namespaces a and b, each direction delayed and rate-limited;
        returns a's address and b's on it."""
        n = len(self.links) + 1
        here, there = f"10.231.{n}.1", f"10.231.{n}.2"
        dev_a, dev_b = f"wan{n}a", f"wan{n}b"
        _ip("link", "add", dev_a, "netns", a, "type", "veth", "peer", "name", dev_b, "netns", b)
        if _netem_available(a, dev_a):
            self.emulation = "netem"
            for ns, dev, addr in ((a, dev_a, here), (b, dev_b, there)):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                self._tc(ns, "qdisc", "add", "dev", dev, "root", "netem", "delay",
                         f"{delay_ms}ms", "rate", f"{rate_mbit}mbit", "limit", "10000")  # fmt: skip
        else:
            self.emulation = "delay line + tbf"
            _ip("-n", a, "link", "del", dev_a)
            self._delay_line(a, dev_a, b, dev_b, delay_ms)
            for ns, dev, addr, peer in ((a, dev_a, here, there), (b, dev_b, there, here)):
                _ip("-n", ns, "addr", "add", addr, "peer", peer, "dev", dev)
                _ip("-n", ns, "link", "set", dev, "mtu", "9000", "up")
                self._tc(ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                         f"{rate_mbit}mbit", "burst", "64kb", "latency", "400ms")  # fmt: skip
        self.links.append((a, dev_a, b, dev_b))
        return here, there

    def _delay_line(self, a: str, dev_a: str, b: str, dev_b: str, delay_ms: float) -> None:
        argv = [sys.executable, "-m", "testkit.delay_line", a, dev_a, b, dev_b, str(delay_ms)]
        root = Path(__file__).resolve().parents[1]
        proc = subprocess.Popen(
            argv, cwd=root, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent
        )
        self._procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the delay line {dev_a}-{dev_b} did not start")

    def _tc(self, ns: str, *args: str) -> None:
        _ip("netns", "exec", ns, "tc", *args)

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Cut (up=False) or restore the link between a and b: a partition."""
        for ns_a, dev_a, ns_b, dev_b in self.links:
            if {ns_a, ns_b} == {a, b}:
                for ns, dev in ((ns_a, dev_a), (ns_b, dev_b)):
                    _ip("-n", ns, "link", "set", dev, "up" if up else "down")
                return
        raise KeyError(f"no link between {a} and {b}")

    def route(self, ns: str, via: str) -> None:
        """ns's default route through `via` (an address on one of its links)."""
        _ip("-n", ns, "route", "add", "default", "via", via)

    def argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """argv inside ns, dying with this process (`ip netns exec` execs it in place, so
        the death signal set here reaches the command itself); stopped when the lab ends."""
        proc = subprocess.Popen(self.argv(ns, argv), preexec_fn=die_with_parent, **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 300, **kwargs: Any) -> Any:
        """argv inside ns to its end (a CompletedProcess), within `timeout` seconds."""
        return subprocess.run(self.argv(ns, argv), timeout=timeout, **kwargs)

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """This thread in ns for the block: a socket made there (a server's listening one)
        stays there after the thread returns."""
        libc = ctypes.CDLL(None, use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
            yield
        finally:
            libc.setns(home, CLONE_NEWNET)
            os.close(home)
            os.close(target)

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        for name in self.namespaces:
            _remove(name)
        self.namespaces.clear()
