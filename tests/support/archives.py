"""Model archives for tests: well-formed ones, and each malicious or broken kind."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

FAKE_MODEL = {
    "saved_model.pb": b"\x08\x01fake-graph",
    "variables/variables.index": b"idx",
    "variables/variables.data-00000-of-00001": b"\x00\x01" * 1000,
}


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def tar_bytes(files: dict[str, bytes], compress: bool = True, dirs: bool = True) -> bytes:
    """A tar(.gz) laid out like tfhub.dev's: './' first, each folder before its files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if compress else "w") as tar:
        if dirs:
            _add_dir(tar, ".")
        made: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if dirs and folder not in made:
                    _add_dir(tar, "./" + folder)
                    made.add(folder)
            _add_file(tar, "./" + name, files[name])
    return out.getvalue()


def tar_of_dir(folder: Path) -> bytes:
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return tar_bytes(files)


def _special(kind: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        _add_dir(tar, ".")
        _add_file(tar, "./saved_model.pb", b"graph")
        info = tarfile.TarInfo("./evil")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "saved_model.pb"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    return out.getvalue()


def malicious(kind: str) -> bytes:
    """One archive per way a model archive can be bad."""
    if kind in ("symlink", "hardlink", "device", "fifo"):
        return _special(kind)
    if kind == "absolute":
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            _add_file(tar, "saved_model.pb", b"graph")
            _add_file(tar, "/etc/cron.d/evil", b"* * * * * root sh")
        return out.getvalue()
    if kind == "dotdot":
        return tar_bytes({"saved_model.pb": b"graph", "../../evil.sh": b"x"}, dirs=False)
    if kind == "file_before_dir":
        return tar_bytes(FAKE_MODEL, dirs=False)
    if kind == "no_saved_model":
        return tar_bytes({"model.onnx": b"not a saved model"})
    if kind == "bomb":
        return tar_bytes({"saved_model.pb": b"graph", "variables/huge": b"\0" * (40 << 20)})
    if kind == "corrupt_gzip":
        data = bytearray(tar_bytes(FAKE_MODEL))
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0x5A
        return bytes(data)
    if kind == "truncated_gzip":
        data = tar_bytes(FAKE_MODEL)
        return data[: len(data) * 2 // 3]
    if kind == "cut_at_member":
        return cut_at_member_boundary(tar_bytes(FAKE_MODEL, compress=False))
    return _hostile(kind)


def _hostile(kind: str) -> bytes:
    if kind == "duplicate":
        return _members([("f", "./saved_model.pb", b"one"), ("f", "./saved_model.pb", b"two")])
    if kind == "file_then_dir":
        return _members([("f", "./saved_model.pb", b"g"), ("f", "./v", b"x"), ("d", "./v", b"")])
    if kind == "dir_then_file":
        return _members([("f", "./saved_model.pb", b"g"), ("d", "./v", b""), ("f", "./v", b"x")])
    if kind == "long_segment":
        return _members([("f", "./saved_model.pb", b"g"), ("f", "./" + "a" * 300, b"x")])
    if kind == "declares_a_terabyte":
        # A 6 KB archive whose member declares 10**12 bytes and carries 4 KiB, no end.
        info = tarfile.TarInfo("./saved_model.pb")
        info.size = 10**12
        head = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        return gzip_bytes(_dir_block() + head + b"\1" * 4096)
    if kind == "huge_pax_header":
        info = tarfile.TarInfo("././@PaxHeader")
        info.type = tarfile.XHDTYPE
        info.size = 200 << 20
        head = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        return gzip_bytes(_dir_block() + head + b"9 a=b\n" * 1000)
    raise ValueError(kind)


def _dir_block() -> bytes:
    info = tarfile.TarInfo(".")
    info.type = tarfile.DIRTYPE
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def _members(entries: list[tuple[str, str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        _add_dir(tar, ".")
        for kind, name, data in entries:
            if kind == "d":
                _add_dir(tar, name)
            else:
                _add_file(tar, name, data)
    return out.getvalue()


def sparse_archive(work: Path, tar_format: str, holes: int = 100 << 20) -> bytes:
    """What `tar --sparse` makes of a model folder holding a file of `holes` zero bytes
    that takes no disk space (GNU tar; tar_format gnu or pax)."""
    model = work / "sparse-model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    with (model / "zeros.bin").open("wb") as out:
        out.truncate(holes)
        out.seek(holes - 1)
        out.write(b"\1")
    target = work / f"sparse-{tar_format}.tgz"
    subprocess.run(
        ["tar", "--sparse", f"--format={tar_format}", "-czf", str(target), "-C", str(model), "."],
        check=True,
    )
    return target.read_bytes()


def cut_at_member_boundary(plain_tar: bytes) -> bytes:
    """A tar cut right after a member, as a response cut between two members would be."""
    with tarfile.open(fileobj=io.BytesIO(plain_tar), mode="r:") as tar:
        members = tar.getmembers()
    last = members[-2]  # keep all but the last member, and no end-of-archive marker
    end = last.offset_data + ((last.size + 511) // 512) * 512
    return plain_tar[:end]


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


MALICIOUS_KINDS = {
    "absolute": "absolute member path",
    "dotdot": "escapes the model folder",
    "symlink": "symlink",
    "hardlink": "hard link",
    "device": "device file",
    "fifo": "fifo",
    "file_before_dir": "comes before its directory entry",
    "no_saved_model": "no saved_model.pb",
    "bomb": "archive bomb",
    "corrupt_gzip": "corrupt or truncated archive",
    "truncated_gzip": "corrupt or truncated archive",
    "cut_at_member": "end-of-archive marker",
    "duplicate": "two members named",
    "file_then_dir": "two members named",
    "dir_then_file": "two members named",
    "long_segment": "too long to extract",
    "declares_a_terabyte": "declares 1000000000000 bytes",
    "huge_pax_header": "bytes of metadata",
}
