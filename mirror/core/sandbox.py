"""Run code from upstream (a setup.py, a build backend) where it can do no harm: bubblewrap
gives the command fresh namespaces (no network but loopback, its own process tree, no
capabilities), an environment with no secret in it (bwrap's own included: its init's
/proc/1/environ is readable inside), the system read-only, a throwaway /tmp and home and
one writable work folder that the caller throws away. The mirror's services reach it
only through Unix sockets bridged to loopback ports inside (as verify's air-gap proof
bridges them); SandboxLimits bound its time and its whole tree's memory and processes
(mirror.core.tree_caps); and nothing it wrote is opened by path with the host's rights
except through mirror.core.sandbox_files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirror.core.children import die_with_parent
from mirror.core.errors import SandboxUnavailable
from mirror.core.tree_caps import Group, TreeCaps, capped_tree, rlimits

INSTALL_HINT = "install bubblewrap (Debian: apt-get install bubblewrap)"
# Where the work folder appears inside: a name no host path starts with, so no mount of
# an interpreter or tool (a venv under /work, say) is hidden under it.
INSIDE_WORK = "/tfmirror-build"
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


# bwrap's own environment: enough to find nothing (it execs by absolute path).
BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxLimits:
    """What a sandboxed command may spend before it is stopped."""

    seconds: float = 900.0
    memory_mb: int = 4096  # the whole tree's, and each process's address space
    processes: int = 512  # the whole tree's


@dataclass(frozen=True)
class Bridge:
    """A service of the mirror's, reachable inside at 127.0.0.1:port."""

    socket: Path  # a Unix socket on the host side
    port: int


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed command ended."""

    returncode: int
    timed_out: bool
    seconds: float
    tail: str  # the end of what the command printed
    hit: str | None = None  # "memory" or "process": a cap of the tree's it ran into

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
        env=BWRAP_ENV,
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


def _before_exec(caps: SandboxLimits, group: Group) -> None:
    """In the child before exec (it is bwrap): into the tree's cgroup, the limits every
    process inside inherits, and death with its parent."""
    die_with_parent()
    group.join()
    rlimits(TreeCaps(caps.memory_mb, caps.processes), group)


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
    argv: Sequence[str], work: Path, caps: SandboxLimits, mounts: Mounts
) -> SandboxResult:
    """Run argv inside; the end of its output comes back in the SandboxResult."""
    began = time.monotonic()
    tree = TreeCaps(caps.memory_mb, caps.processes)
    # Outside the work folder: the sandbox can write to it, never replace it by a link.
    with tempfile.TemporaryFile(prefix="tfmirror-sandbox-") as out, capped_tree(tree) as group:
        proc = subprocess.Popen(
            command_line(argv, work, mounts),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=BWRAP_ENV,
            start_new_session=True,
            preexec_fn=lambda: _before_exec(caps, group),
        )
        timed_out = False
        try:
            code = proc.wait(timeout=caps.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            # bwrap is the namespace's parent: with it goes every process inside.
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        hit = group.hit()
        out.seek(max(0, out.seek(0, os.SEEK_END) - LOG_TAIL))
        tail = out.read().decode("utf-8", "replace")
    return SandboxResult(code, timed_out, time.monotonic() - began, tail, hit)
