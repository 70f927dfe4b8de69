"""Reading what a sandbox wrote, with the host's rights, without being led elsewhere:
everything in its work folder is hostile (a build can replace its log, lock file or
output folder by a link to `/proc/self/environ`, the config or the bundle key), so every
step of a path is opened relative to the one before it with O_NOFOLLOW, the last must be
a regular file, and a read stops at a cap: a name can only ever mean a file the sandbox
itself made inside its folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mirror.core.errors import Refused

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block


def _walk(work: Path, parts: list[str]) -> int:
    """A descriptor of the folder `parts` inside `work`, each step without links."""
    fd = os.open(work, _DIR)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise Refused(f"{part!r} is not a plain name")
            try:
                step = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise Refused(
                    f"{'/'.join(parts)}: not a folder of the sandbox's ({exc.strerror})"
                ) from None
            os.close(fd)
            fd = step
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def open_inside(work: Path, relative: str, limit: int) -> Iterator[BinaryIO]:
    """The regular file `relative` (a/b/c) inside `work`, opened for reading; refused
    if any step is a link, it is not a regular file, or it is over `limit` bytes."""
    *folders, name = relative.split("/")
    folder = _walk(work, folders)
    try:
        try:
            fd = os.open(name, _FILE, dir_fd=folder)
        except OSError as exc:
            raise Refused(f"{relative}: not a file of the sandbox's ({exc.strerror})") from None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{relative}: not a regular file")
    if info.st_size > limit:
        os.close(fd)
        raise Refused(f"{relative}: {info.st_size} bytes, over the {limit}-byte cap")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        yield handle


def read_inside(work: Path, relative: str, limit: int) -> bytes:
    with open_inside(work, relative, limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while read (nothing runs inside by now, but still)
        raise Refused(f"{relative}: over the {limit}-byte cap")
    return data


def files_inside(work: Path, relative: str) -> list[str]:
    """Names of the regular files (not links, not folders) in the folder `relative`."""
    folder = _walk(work, [p for p in relative.split("/") if p])
    try:
        names = os.listdir(folder)
        out = []
        for name in names:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                out.append(name)
        return sorted(out)
    finally:
        os.close(folder)


def copy_out(work: Path, relative: str, dest: Path, limit: int) -> None:
    """The regular file `relative` copied to `dest` (a path of the host's own)."""
    with open_inside(work, relative, limit) as handle, dest.open("xb") as out:
        shutil.copyfileobj(handle, out)
        if out.tell() > limit:
            raise Refused(f"{relative}: over the {limit}-byte cap")
