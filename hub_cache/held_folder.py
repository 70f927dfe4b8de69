"""A folder held open by its descriptor, whose names are looked up in it and never through
a link: for trees someone else can write into (a TF Serving repository on a shared
volume), where `home / name` followed a link planted in place of a folder and pruned or
wrote versions wherever it pointed. Every call names an entry of this folder: it is
opened with O_NOFOLLOW, renamed, exchanged and removed relative to the descriptor, so
swapping a folder on the path for a link after it was opened changes nothing. An entry
that is a link (or not the kind asked for) is refused with `NotFollowed`, naming it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from hub_cache.errors import NotFollowed

AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# NONBLOCK: a fifo planted in a file's place is refused, not waited on.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_TEXT = 1024 * 1024  # our records and configs are a few KB


def exchange(dir_fd: int, a: str, b: str) -> bool:
    """Atomically swap two entries (Linux renameat2 RENAME_EXCHANGE, names relative to
    `dir_fd`, AT_FDCWD for paths); False if unsupported. Links are exchanged, not followed."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # the filesystem cannot
        return False
    raise OSError(code, os.strerror(code), b)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file"


class HeldFolder:
    """One folder by descriptor; `shown` is its path as the user gave it, for messages."""

    def __init__(self, fd: int, shown: Path) -> None:
        self.fd = fd
        self.shown = shown

    @classmethod
    def open_root(cls, path: Path) -> HeldFolder:
        """The root itself is the operator's choice and may be reached through a link;
        nothing under it is."""
        path.mkdir(parents=True, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> HeldFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refusal(self, name: str, wanted: str) -> NotFollowed:
        return NotFollowed(
            f"{self.shown / name} is {self.kind(name) or 'gone'}, not {wanted}: tfmirror "
            "follows no link where it writes, and replaces nothing of another kind; remove it"
        )

    def kind(self, name: str) -> str | None:
        """What the entry is, never following it; None if there is none."""
        try:
            return _kind(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return None

    def has_folder(self, name: str) -> bool:
        """True for a folder, False for nothing; refused for anything else."""
        kind = self.kind(name)
        if kind not in (None, "a folder"):
            raise self.refusal(name, "a folder")
        return kind is not None

    def has_file(self, name: str) -> bool:
        """True for a regular file, False for nothing; refused for anything else."""
        kind = self.kind(name)
        if kind not in (None, "a file"):
            raise self.refusal(name, "a file")
        return kind is not None

    def make_folder(self, name: str, mode: int) -> HeldFolder:
        """A new folder, made here now (an existing one of that name is an error)."""
        os.mkdir(name, mode, dir_fd=self.fd)
        return self.folder(name)

    def folder(self, name: str, create: bool = False) -> HeldFolder:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=self.fd)
        try:
            fd = os.open(name, _FOLDER, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise self.refusal(name, "a folder") from None
            raise
        return HeldFolder(fd, self.shown / name)

    def entries(self) -> Iterator[os.DirEntry[str]]:
        # scandir(fd) reads a copy of the descriptor and rewinds it when done.
        with os.scandir(self.fd) as found:
            yield from found

    def refuse_links(self) -> None:
        """Refuse the folder if any entry in it is a link: a link named like a version
        would have TF Serving load whatever it points at, and us prune through it."""
        for entry in self.entries():
            if entry.is_symlink():
                raise self.refusal(entry.name, "a folder or file")

    def read_text(self, name: str) -> str | None:
        """A regular file's text; None if there is none."""
        try:
            fd = os.open(name, _FILE, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.refusal(name, "a file") from None
            raise
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self.refusal(name, "a file")
            return handle.read(MAX_TEXT).decode(errors="replace")

    def write_text(self, name: str, text: str) -> None:
        """Replace the file in one step (readers see the old text or the new)."""
        self.has_file(name)
        tmp = f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self.fd
        )
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.remove(tmp)
            raise

    def rename(self, old: str, new: str) -> None:
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def exchange(self, a: str, b: str) -> bool:
        return exchange(self.fd, a, b)

    def touch(self, name: str) -> None:
        os.utime(name, dir_fd=self.fd, follow_symlinks=False)

    def remove(self, name: str) -> None:
        """Remove an entry and, if it is a folder, what is in it; a link is unlinked, never
        followed (shutil.rmtree with dir_fd works by descriptor all the way down)."""
        kind = self.kind(name)
        if kind == "a folder":
            shutil.rmtree(name, dir_fd=self.fd, ignore_errors=True)
        elif kind is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)

    def swap_in(self, staging: str, name: str) -> None:
        """Put the folder `staging` in place as `name`. An older copy is exchanged with it
        in one renameat2(RENAME_EXCHANGE), so a reader (tensorflow_hub, TF Serving) finds
        the old one or the new, never an empty place; the old copy is set aside as
        `<name>.<id>.old` for `drop_old_copies`, not emptied under a reader still in it."""
        if not self.has_folder(name):
            self.rename(staging, name)
            return
        aside = f"{name}.{uuid.uuid4().hex}.old"
        if self.exchange(staging, name):
            self.rename(staging, aside)
            self.touch(aside)  # its age counts from now
            return
        self.rename(name, aside)  # no renameat2 here (not Linux, or an old kernel): a brief gap
        self.rename(staging, name)
        self.remove(aside)

    def drop_old_copies(self, older_than: float) -> None:
        """Remove the copies `swap_in` set aside more than `older_than` seconds ago."""
        now = time.time()
        old = [e for e in self.entries() if e.name.endswith(".old") and not e.is_symlink()]
        for entry in old:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                    self.remove(entry.name)
            except OSError:
                continue

    def path_inside(self) -> Path:
        """A path that reaches this very folder whatever is renamed or linked on the way
        to it since it was opened (Linux's /proc/self/fd); its shown path elsewhere."""
        proc = Path(f"/proc/self/fd/{self.fd}")
        return proc if proc.is_dir() else self.shown
