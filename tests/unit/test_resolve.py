from __future__ import annotations

import pytest

from mirror.core.config import Target
from mirror.pypi.errors import ResolveError
from mirror.pypi.resolve import platforms_for, select_wheels, uv_platform

LINUX = Target("3.11", "manylinux_2_28_x86_64")
WINDOWS = Target("3.11", "win_amd64")
MAC = Target("3.12", "macosx_12_0_arm64")


def lock(*packages: tuple[str, str, list[str]]) -> str:
    out = ['lock-version = "1.0"\ncreated-by = "test"\n']
    for name, version, files in packages:
        wheels = ", ".join(
            f'{{ url = "https://files.example/{f}", size = 10, '
            f'hashes = {{ sha256 = "{i:064x}" }} }}'
            for i, f in enumerate(files, start=1)
        )
        out.append(f'[[packages]]\nname = "{name}"\nversion = "{version}"\nwheels = [{wheels}]\n')
    return "\n".join(out)


def test_manylinux_target_accepts_older_glibc_and_legacy_aliases() -> None:
    tags = platforms_for("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux_2_31_x86_64" not in tags


def test_picks_the_wheel_the_target_would_install() -> None:
    text = lock(
        (
            "numpy",
            "2.0",
            [
                "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "numpy-2.0-cp311-cp311-manylinux_2_31_x86_64.whl",  # too new for 2.28
                "numpy-2.0-cp311-cp311-win_amd64.whl",
                "numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.whl",
            ],
        ),
        ("six", "1.0", ["six-1.0-py2.py3-none-any.whl"]),
        ("mixed", "1.0", ["mixed-1.0-py3-none-any.whl", "mixed-1.0-cp311-abi3-win_amd64.whl"]),
    )
    linux = {w.project: w.filename for w in select_wheels(text, LINUX)}
    assert linux == {
        "numpy": "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "six": "six-1.0-py2.py3-none-any.whl",
        "mixed": "mixed-1.0-py3-none-any.whl",
    }
    windows = {w.project: w.filename for w in select_wheels(text, WINDOWS)}
    assert windows["numpy"] == "numpy-2.0-cp311-cp311-win_amd64.whl"
    # A platform wheel beats the pure one where it fits.
    assert windows["mixed"] == "mixed-1.0-cp311-abi3-win_amd64.whl"


def test_no_wheel_for_a_target_names_project_and_target() -> None:
    text = lock(("tensorflow-io", "0.3", ["tensorflow_io-0.3-cp311-cp311-win_amd64.whl"]))
    with pytest.raises(ResolveError) as info:
        select_wheels(text, LINUX)
    assert "tensorflow-io" in str(info.value)
    assert "py3.11-manylinux_2_28_x86_64" in str(info.value)


def test_mac_targets_accept_older_macos_builds() -> None:
    text = lock(("numpy", "2.0", ["numpy-2.0-cp312-cp312-macosx_11_0_arm64.whl"]))
    assert select_wheels(text, MAC)[0].filename.endswith("macosx_11_0_arm64.whl")


@pytest.mark.parametrize(
    ("platform", "uv"),
    [
        ("manylinux_2_28_x86_64", "x86_64-manylinux_2_28"),
        ("manylinux_2_30_x86_64", "x86_64-manylinux_2_28"),
        ("manylinux2014_aarch64", "aarch64-manylinux_2_17"),
        ("win_amd64", "x86_64-pc-windows-msvc"),
        ("macosx_12_0_arm64", "aarch64-apple-darwin"),
        ("musllinux_1_2_x86_64", "x86_64-unknown-linux-musl"),
    ],
)
def test_uv_platform_mapping(platform: str, uv: str) -> None:
    assert uv_platform(Target("3.11", platform))[0] == uv


@pytest.mark.parametrize(
    "filename", ["six-1.0-py3-none-any<b>.whl", "six-1.0-py3-none-any%2F..%2Fx.whl", "six .whl"]
)
def test_a_file_name_that_is_not_a_plain_wheel_name_is_refused(filename: str) -> None:
    with pytest.raises(ResolveError, match="not a plain wheel file name"):
        select_wheels(lock(("six", "1.0", [filename])), LINUX)


def test_a_sha256_that_is_not_hex_is_refused() -> None:
    text = lock(("six", "1.0", ["six-1.0-py3-none-any.whl"])).replace(f"{1:064x}", "../" * 21 + "a")
    with pytest.raises(ResolveError, match="not 64 hex digits"):
        select_wheels(text, LINUX)
