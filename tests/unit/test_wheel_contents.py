"""The wheel validator: each lie a build can tell in a wheel, refused with its reason;
a true wheel (the test suite's, and a real one from the store of pip's own) passes."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from mirror.pypi.errors import WheelRefused
from mirror.pypi.wheel_contents import WheelCaps, check_wheel
from testkit.wheels import WheelSpec, build_wheel

NAME = "liar-1.0-py3-none-any.whl"
DIST = "liar-1.0.dist-info"


def _line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make(
    tmp_path: Path,
    files: dict[str, bytes] | None = None,
    *,
    name: str = "liar",
    version: str = "1.0",
    tag: str = "py3-none-any",
    record: str | None = None,
    link: str | None = None,
    filename: str = NAME,
) -> Path:
    """A wheel honest in every way but the ones a test changes."""
    body = {"liar/__init__.py": b"x = 1\n", **(files or {})}
    body[f"{DIST}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    body[f"{DIST}/WHEEL"] = f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    lines = [_line(p, d) for p, d in body.items()] + [f"{DIST}/RECORD,,"]
    body[f"{DIST}/RECORD"] = (record if record is not None else "\n".join(lines) + "\n").encode()
    path = tmp_path / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in body.items():
            zf.writestr(member, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def fresh(tmp_path: Path) -> Path:
    """A folder of its own for a second wheel of the same name in one test."""
    folder = tmp_path / f"w{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    return folder


def refused(path: Path, filename: str = NAME, caps: WheelCaps | None = None) -> str:
    with pytest.raises(WheelRefused) as caught:
        check_wheel(path, filename, caps)
    return str(caught.value)


def test_an_honest_wheel_passes(tmp_path: Path) -> None:
    check_wheel(make(tmp_path), NAME)
    spec = WheelSpec("some-thing", "2.0.1", ["six"])
    (tmp_path / spec.filename).write_bytes(build_wheel(spec))
    check_wheel(tmp_path / spec.filename, spec.filename)


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../../../../tmp/x.pth", "leaves its folder"),
        ("/etc/x", "not a relative path"),
        ("liar\\..\\x.py", "not a relative path"),
        ("liar//x.py", "empty step"),
        ("C:/x.py", "not a relative path"),
    ],
)
def test_names_outside_the_install_are_refused(tmp_path: Path, member: str, why: str) -> None:
    assert why in refused(make(tmp_path, {member: b"import os"}))


def test_links_and_duplicates_are_refused(tmp_path: Path) -> None:
    assert "is a link" in refused(make(tmp_path, link="liar/passwd"))
    path = make(fresh(tmp_path))
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning):
        zf.writestr("liar/__init__.py", b"x = 2\n")
    assert "appears twice" in refused(path)


def test_metadata_and_wheel_must_say_what_the_name_says(tmp_path: Path) -> None:
    assert "METADATA names 'other'" in refused(make(tmp_path, name="other"))
    assert "METADATA says version '2.0'" in refused(make(fresh(tmp_path), version="2.0"))


def test_wheel_tags_must_be_the_file_names(tmp_path: Path) -> None:
    why = refused(make(tmp_path, tag="cp311-cp311-linux_x86_64"))
    assert "WHEEL declares tags cp311-cp311-linux_x86_64, not its name's" in why


def test_record_must_match_every_file(tmp_path: Path) -> None:
    assert "is not in its RECORD" in refused(make(tmp_path, record="nothing,sha256=AAAA,1\n"))
    lying = f"liar/__init__.py,sha256=AAAA,6\n{DIST}/METADATA,,\n{DIST}/WHEEL,,\n{DIST}/RECORD,,\n"
    assert "does not match its RECORD's sha256" in refused(make(fresh(tmp_path), record=lying))


def test_a_pure_wheel_holds_no_native_code(tmp_path: Path) -> None:
    assert "native library" in refused(make(tmp_path, {"liar/_x.so": b"\x7fELF" + b"\0" * 60}))
    elf = make(fresh(tmp_path), {"liar/data.bin": b"\x7fELF" + b"\0" * 60})
    assert "is native code" in refused(elf)
    # A Windows launcher, as setuptools' and distlib's pure wheels carry, is allowed.
    check_wheel(make(fresh(tmp_path), {"liar/cli-32.exe": b"MZ" + b"\0" * 60}), NAME)


def test_archive_caps_are_checked_before_inflating(tmp_path: Path) -> None:
    bomb = make(tmp_path, {"liar/zeros.txt": b"\0" * 5_000_000})
    caps = WheelCaps(max_ratio=10, ratio_floor=1_000_000)
    assert "zip bomb" in refused(bomb, caps=caps)
    assert "entries, over the cap" in refused(bomb, caps=WheelCaps(max_entries=3))


def test_not_a_zip_or_not_a_wheel_name(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"not a zip")
    assert "not a readable zip" in refused(tmp_path / NAME)
    assert "is not a wheel name" in refused(tmp_path / NAME, "liar.tar.gz")
