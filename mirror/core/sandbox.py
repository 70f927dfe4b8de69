"""Run code from upstream (a setup.py, a build backend) where it can do no harm.

bubblewrap (Debian's `bubblewrap`) gives the command fresh namespaces: no network but
loopback, its own process tree (killing bwrap kills everything in it), no capabilities,
a clean environment with no secret in it, the system's programs and libraries read-only,
a throwaway /tmp and home, and one writable folder, the work folder, which the caller
throws away. The mirror's own services reach it only through Unix sockets bridged to
loopback ports inside (the way verify's air-gap proof bridges them), and a time and a
memory cap bound it.

    outcome = run_sandboxed(["python3.10", "-m", "build"], work, Caps(600, 4096), ...)
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirror.core.children import die_with_parent
from mirror.core.errors import TfmirrorError

INSTALL_HINT = "install bubblewrap (Debian: apt-get install bubblewrap)"
INSIDE_WORK = "/work"
LOG_TAIL = 4000  # characters of a failed command's output kept for its report
# The system, read-only: programs, libraries, compilers. /etc only for what the dynamic
# linker and the compilers read (no host names, no credentials, no package config).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
)

# Runs inside, as the sandbox's first process: listens on each loopback port and sends
# each connection to its Unix socket, then runs the command (no imports of ours: only
# the standard library of whichever Python the sandbox holds).
FORWARDER = """
import os, socket, subprocess, sys, threading
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(listener, path):
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(path)
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
sep = sys.argv.index("--")
specs = sys.argv[1:sep]
for path, port in zip(specs[::2], specs[1::2]):
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(256)  # uv opens dozens of connections at once
    threading.Thread(target=serve, args=(listener, path), daemon=True).start()
sys.exit(subprocess.call(sys.argv[sep + 1:]))
"""


class SandboxUnavailable(TfmirrorError):
    """No sandbox engine here; the message says what to install."""


@dataclass(frozen=True)
class Caps:
    seconds: float = 900.0
    memory_mb: int = 4096


@dataclass(frozen=True)
class Bridge:
    """A service of the mirror's, reachable inside at 127.0.0.1:port."""

    socket: Path  # a Unix socket on the host side
    port: int


@dataclass(frozen=True)
class Outcome:
    returncode: int
    timed_out: bool
    seconds: float
    tail: str  # the end of what the command printed

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class Mounts:
    """What the command sees besides the system: read-only paths (an interpreter's
    prefix, a tool) and the bridges to the mirror's services."""

    read_only: tuple[Path, ...] = ()
    bridges: tuple[Bridge, ...] = ()
    forwarder_python: str = ""  # a Python inside that runs FORWARDER (with bridges)
    env: Mapping[str, str] = field(default_factory=dict)


def bwrap_binary() -> str | None:
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/usr/local/bin")


def available() -> str | None:
    """Why no sandbox can run here, or None if one can."""
    bwrap = bwrap_binary()
    if bwrap is None:
        return f"no sandbox to build in: {INSTALL_HINT}"
    probe = subprocess.run(
        [bwrap, *_isolation(), *_system(), "--", "/bin/true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["it exited with an error"])[-1]
        return f"bubblewrap cannot make a sandbox here ({reason[:200]})"
    return None


def _isolation() -> list[str]:
    return [
        "--unshare-all",  # network (loopback only), pids, ipc, uts, cgroup, user
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into the caller's terminal
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]


def _system() -> list[str]:
    args = []
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC:
        args += ["--ro-bind-try", path, path]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def _caps(memory_mb: int) -> None:
    """In the child before exec: a memory cap the whole tree inherits, and its own
    process group so a timeout kills every process in it."""
    die_with_parent()
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def command_line(argv: Sequence[str], work: Path, mounts: Mounts) -> list[str]:
    bwrap = bwrap_binary()
    if bwrap is None:
        raise SandboxUnavailable(f"no sandbox to build in: {INSTALL_HINT}")
    args = [bwrap, *_isolation(), *_system()]
    for path in mounts.read_only:
        args += ["--ro-bind", str(path), str(path)]
    inner: list[str] = list(argv)
    if mounts.bridges:
        specs = []
        for i, bridge in enumerate(mounts.bridges):
            inside = f"/run/tfmirror-{i}.sock"
            args += ["--bind", str(bridge.socket), inside]
            specs += [inside, str(bridge.port)]
        inner = [mounts.forwarder_python, "-c", FORWARDER, *specs, "--", *inner]
    args += ["--bind", str(work), INSIDE_WORK, "--chdir", INSIDE_WORK, "--clearenv"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        **mounts.env,
    }
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--", *inner]


def run_sandboxed(
    argv: Sequence[str], work: Path, caps: Caps, mounts: Mounts, log: Path
) -> Outcome:
    """Run argv inside; its output goes to `log` (in a folder of the caller's)."""
    began = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command_line(argv, work, mounts),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _caps(caps.memory_mb),
        )
        timed_out = False
        try:
            code = proc.wait(timeout=caps.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            # bwrap is the namespace's parent: with it goes every process inside.
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    return Outcome(code, timed_out, time.monotonic() - began, _tail(log))


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - LOG_TAIL))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
