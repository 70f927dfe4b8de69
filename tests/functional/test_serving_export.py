"""`tfmirror hub export-serving` writes under its folder only: a link planted there (the
model folder, a version, the record, models.config) is refused, naming it, and
nothing it points at is read, pruned or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_cache.held_folder import HeldFolder
from tests.support.archives import FAKE_MODEL, tar_bytes

ROOT = Path(__file__).resolve().parents[2]


def tfmirror(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mirror holding three versions of one model, m/1..3 (TF Serving name `m`)."""
    home = tmp_path_factory.mktemp("mirror")
    config = home / "tfmirror.toml"
    config.write_text('[storage]\npath = "store"\n')
    archive = home / "model.tar.gz"
    archive.write_bytes(tar_bytes(FAKE_MODEL))
    for version in (1, 2, 3):
        done = tfmirror(config, "hub", "import", str(archive), "--handle", f"https://h/m/{version}")
        assert done.returncode == 0, done.stderr
    yield config


def tree(top: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under `top` as it is (links not followed): kind, mtime, content."""
    seen = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            body: bytes | str = b""
            if path.is_symlink():
                body = os.readlink(path)
            elif path.is_file():
                body = path.read_bytes()
            seen[str(path.relative_to(top))] = (st.st_mode, st.st_mtime_ns, body)
    return seen


def victim_with_versions(top: Path) -> Path:
    """Someone else's folder that looks like a model folder: numbered versions and a
    record naming them."""
    victim = top / "victim"
    for version in ("1", "2", "3"):
        (victim / version).mkdir(parents=True)
        (victim / version / "precious").write_text(f"not the mirror's {version}")
    (victim / ".tfmirror.json").write_text(json.dumps({"versions": {"1": "a", "2": "b"}}))
    (victim / "models.config").write_text("someone else's\n")
    return victim


def plant(serving: Path, victim: Path, entry: str) -> None:
    if entry == "m":
        serving.mkdir()
        (serving / "m").symlink_to(victim)
        return
    (serving / "m").mkdir(parents=True)
    record = {"versions": {"1": "a", "2": "b", "3": "c"}}
    (serving / "m" / ".tfmirror.json").write_text(json.dumps(record))
    target = {"m/1": victim / "1"}.get(entry, victim / Path(entry).name)
    if entry == "m/.tfmirror.json":
        (serving / "m" / ".tfmirror.json").unlink()
    (serving / entry).symlink_to(target)


@pytest.mark.parametrize("entry", ["m", "m/1", "m/.tfmirror.json", "models.config"])
def test_a_link_under_the_export_folder_is_refused_and_nothing_it_points_at_is_touched(
    mirror: Path, tmp_path: Path, entry: str
) -> None:
    victim = victim_with_versions(tmp_path)
    serving = tmp_path / "serving"
    plant(serving, victim, entry)
    victim_before, serving_before = tree(victim), tree(serving)

    done = tfmirror(mirror, "hub", "export-serving", str(serving), "--keep", "1")

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"tfmirror: refused: {serving / entry} is a symbolic link" in done.stderr
    assert tree(victim) == victim_before
    assert tree(serving) == serving_before  # refused before anything was written


def test_an_export_keeps_the_newest_versions_and_a_rerun_changes_nothing(
    mirror: Path, tmp_path: Path
) -> None:
    serving = tmp_path / "serving"
    first = tfmirror(mirror, "hub", "export-serving", str(serving), "--keep", "1")
    assert first.returncode == 0, first.stderr
    assert "m/3: written" in first.stdout and "m/1: removed" in first.stdout
    assert sorted(p.name for p in (serving / "m").iterdir()) == [".tfmirror.json", "3"]
    assert (serving / "m" / "3" / "saved_model.pb").read_bytes() == FAKE_MODEL["saved_model.pb"]
    assert oct((serving / "m" / "3").stat().st_mode & 0o777) == "0o755"  # TF Serving reads it
    config = (serving / "models.config").read_text()
    assert f'base_path: "{serving.resolve() / "m"}"' in config and "versions: 3" in config
    before = tree(serving)

    again = tfmirror(
        mirror, "hub", "export-serving", str(serving), "--keep", "1", "--models", "m/3"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "m/3: unchanged (https://h/m/3)"
    assert tree(serving) == before


def test_a_folder_swapped_for_a_link_after_it_was_opened_is_still_the_one_written(
    tmp_path: Path,
) -> None:
    # Between the checks and the writes someone replaces the model folder with a link:
    # every step works on the folder that was opened, by its descriptor.
    victim = victim_with_versions(tmp_path)
    serving = tmp_path / "serving"
    (serving / "m" / "1").mkdir(parents=True)
    victim_before = tree(victim)
    with HeldFolder.open_root(serving) as root, root.folder("m") as home:
        (serving / "m").rename(serving / "moved")
        (serving / "m").symlink_to(victim)
        home.write_text(".tfmirror.json", "{}")
        with home.make_folder(".7.tmp", 0o700):
            pass
        home.swap_in(".7.tmp", "7")
        home.remove("1")
    assert tree(victim) == victim_before
    assert sorted(p.name for p in (serving / "moved").iterdir()) == [".tfmirror.json", "7"]
