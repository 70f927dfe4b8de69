"""Caps on a whole process tree, memory and process count, however many children it forks:
rlimits are per process (`RLIMIT_AS = 1 GB` let four children hold 800 MB each; a fork
loop made 887 processes), a cgroup counts the tree as one. The cgroup is made under this
process's own (v2, or v1's memory and pids hierarchies), the child joins it before it
execs, and what it hit is read back so the failure names the cap; where none can be made
(no root, a read-only cgroupfs), RLIMIT_NPROC bounds the count inside the sandbox's user
namespace and memory stays capped per process."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class TreeCaps:
    memory_mb: int
    processes: int


@dataclass
class Group:
    """One tree's cgroup folders (one for v2; memory and pids for v1), or none."""

    memory: Path | None = None
    pids: Path | None = None
    version: int = 0  # 0: no cgroup, the rlimit fallback
    joined: list[Path] = field(default_factory=list)

    def join(self) -> None:
        """In the child, before exec: into the group (so is everything it forks)."""
        pid = str(os.getpid())
        for folder in {p for p in (self.memory, self.pids) if p is not None}:
            (folder / "cgroup.procs").write_text(pid)

    def hit(self) -> str | None:
        """Which cap the tree ran into, in words, or None."""
        if self.version == 0:
            return None
        if self.pids is not None and _count(self.pids / "pids.events", "max") > 0:
            return "process"
        if self.memory is not None:
            if self.version == 2:
                killed = _count(self.memory / "memory.events", "oom_kill")
            else:
                killed = _count(self.memory / "memory.oom_control", "oom_kill")
            if killed > 0:
                return "memory"
        return None


def _count(path: Path, name: str) -> int:
    """`name N` from a cgroup's flat-keyed file (pids.events, memory.events, ...)."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy ("" for v2's unified one)."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _v2(name: str, caps: TreeCaps) -> Group | None:
    if not (CGROUP_ROOT / "cgroup.controllers").is_file():
        return None
    own = _own_paths().get("")
    if own is None:
        return None
    folder = CGROUP_ROOT / own.lstrip("/") / name
    try:
        folder.mkdir()
    except OSError:
        return None
    if not (folder / "memory.max").exists() or not (folder / "pids.max").exists():
        _remove(folder)  # the controllers are not delegated to this subtree
        return None
    try:
        (folder / "memory.max").write_text(str(caps.memory_mb * 1024 * 1024))
        if (folder / "memory.swap.max").exists():
            (folder / "memory.swap.max").write_text("0")  # no way around the cap by swap
        (folder / "pids.max").write_text(str(caps.processes))
    except OSError:
        _remove(folder)
        return None
    return Group(memory=folder, pids=folder, version=2)


def _v1(name: str, caps: TreeCaps) -> Group | None:
    own = _own_paths()
    made: list[Path] = []
    try:
        memory = CGROUP_ROOT / "memory" / own["memory"].lstrip("/") / name
        pids = CGROUP_ROOT / "pids" / own["pids"].lstrip("/") / name
        for folder in (memory, pids):
            folder.mkdir()
            made.append(folder)
        (memory / "memory.limit_in_bytes").write_text(str(caps.memory_mb * 1024 * 1024))
        with contextlib.suppress(OSError):  # swap accounting may be off
            (memory / "memory.memsw.limit_in_bytes").write_text(str(caps.memory_mb * 1024 * 1024))
        (pids / "pids.max").write_text(str(caps.processes))
    except (KeyError, OSError):
        for folder in made:
            _remove(folder)
        return None
    return Group(memory=memory, pids=pids, version=1)


def _remove(folder: Path) -> None:
    """Kill what is left in the group, then remove it (the kernel refuses while a
    process, even a dying one, is still counted)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            pids = (folder / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # left for the operator to see; harmless and empty soon
            time.sleep(0.05)


@contextlib.contextmanager
def capped_tree(caps: TreeCaps) -> Iterator[Group]:
    """A cgroup for one tree (removed after), or an empty Group: then `rlimits` caps."""
    name = f"tfmirror-build-{uuid.uuid4().hex[:12]}"
    group = _v2(name, caps) or _v1(name, caps) or Group()
    try:
        yield group
    finally:
        for folder in {p for p in (group.memory, group.pids) if p is not None}:
            _remove(folder)


def rlimits(caps: TreeCaps, group: Group) -> None:
    """In the child before exec: what every process of the tree inherits. The address
    space is capped per process always (a cgroup's OOM kill comes late and blunt); the
    process count only where no cgroup counts it."""
    limit = caps.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if group.version == 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (caps.processes, caps.processes))
