"""Dependencies PyPI has only as sdists: built into wheels in a bubblewrap sandbox, with
their provenance, served beside their sdist. Hostile build code gets nothing: no network
but the mirror's own files, no secret, nothing outside its folder, a time and a memory
cap. Real bwrap, real uv, a real devpi; live PyPI for real sdist-only projects."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mirror.core.config import Config, DevpiConfig, Target
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.pypi.interpreters import find_interpreter
from mirror.pypi.manifest import load_manifest
from mirror.pypi.resolve import Role, Wheel
from mirror.pypi.sync import PypiSync, SyncReport
from testkit.mirror_env import LINUX, make_config
from testkit.servers import clean_pip_env, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import SdistSpec, WheelSpec, in_tree_backend
from tests.support.processes import put_secrets
from tfmirror.app import create_app
from tfmirror.services import services_for_sync
from verify import netns

LINUX_ID = "py3.11-manylinux_2_28_x86_64"
PY310 = {"python": "3.10", "platform": "manylinux_2_17_x86_64"}
PEP691 = "application/vnd.pypi.simple.v1+json"
SECRETS = {
    "KAGGLE_KEY": "kaggle-secret-3f9a",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-77c1",
    "TFMIRROR_ADMIN_TOKEN": "admin-secret-c0de",
}


pytestmark = pytest.mark.usefixtures("bubblewrap")


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return put_secrets(monkeypatch, SECRETS)


def sync(config: Config) -> SyncReport:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        return PypiSync(config, store, devpi).run()


def files(config: Config, env: str, target: str) -> dict[str, Wheel]:
    manifest = load_manifest(open_store(config.storage), env, target)
    assert manifest is not None, f"{env}/{target} has no manifest"
    return {w.filename: w for w in manifest.files}


SNOOP = """
import json, socket, uuid

def before_build():
    seen = {{"env": dict(os.environ), "net": {{}}, "read": {{}}, "wrote": {{}}}}
    for host, port in (("127.0.0.1", {port}), ("8.8.8.8", 53), ("10.0.0.1", 80)):
        try:
            socket.create_connection((host, port), timeout=3).close()
            seen["net"][f"{{host}}:{{port}}"] = "connected"
        except OSError as exc:
            seen["net"][f"{{host}}:{{port}}"] = type(exc).__name__
    for path in {secret_files!r}:
        try:
            with open(path) as handle:
                seen["read"][path] = handle.read()[:200]
        except OSError as exc:
            seen["read"][path] = type(exc).__name__
    for path in {outside!r}:
        try:
            with open(path, "w") as handle:
                handle.write("pwned")
            seen["wrote"][path] = "wrote"
        except OSError as exc:
            seen["wrote"][path] = type(exc).__name__
    EXTRA["snoop/seen.json"] = json.dumps(seen)
"""


def test_a_hostile_sdist_is_built_with_nothing_to_steal_and_served_with_its_provenance(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, secrets: dict[str, str]
) -> None:
    upstream.add(WheelSpec("plain", "1.0"))
    outside = [
        str(tmp_path / "pwned"),
        f"{tempfile.gettempdir()}/tfmirror-pwned-{uuid.uuid4().hex}",
    ]
    config_file = tmp_path / "tfmirror.toml"
    config_file.write_text("# the operator's config, which holds where secrets are\n")
    backend = in_tree_backend(
        "snoop",
        "1.0",
        ["plain"],
        SNOOP.format(
            port=upstream.server.server_address[1],
            secret_files=[str(config_file), f"/proc/{os.getpid()}/environ", "/root/.netrc"],
            outside=outside,
        ),
    )
    sdist = upstream.add_sdist(SdistSpec("snoop", "1.0", backend, ["plain"]))
    config = make_config(tmp_path, upstream.index_url, devpi, ["snoop"], pypi={"build_timeout": 60})

    report = sync(config)

    assert report.ok, report.failures
    assert report.built == 1
    mirrored = files(config, "default", LINUX_ID)
    built = mirrored["snoop-1.0-py3-none-any.whl"]
    assert built.role is Role.CLOSURE and built.built_from is not None
    assert built.built_from.sdist == sdist.spec.filename
    assert built.built_from.sdist_sha256 == sdist.sha256
    assert built.built_from.python.startswith("CPython 3.11")
    assert mirrored[sdist.spec.filename].role is Role.SOURCE
    assert mirrored["plain-1.0-py3-none-any.whl"].role is Role.CLOSURE

    # What the build code saw: no secret, no network but the mirror's, nothing of ours.
    store = open_store(config.storage)
    with store.open_blob(built.sha256) as blob:
        seen = json.loads(zipfile.ZipFile(io.BytesIO(blob.read())).read("snoop/seen.json"))
    for value in secrets.values():
        assert value not in json.dumps(seen)
    assert not {k for k in seen["env"] if k.startswith(("AWS_", "KAGGLE", "TFMIRROR"))}
    assert all(v != "connected" for v in seen["net"].values()), seen["net"]
    assert all(not v or v.endswith("Error") for v in seen["read"].values()), seen["read"]
    for path in outside:
        assert not Path(path).exists(), f"the build wrote {path} outside its folder"
    record = store.get("runs/pypi/latest.json") or b""
    assert not any(value.encode() in record for value in secrets.values())

    # Served: the wheel (flagged as built) and its sdist; pip installs the wheel.
    with WebServer(create_app(config), config.web.host, config.web.port):
        index = f"{config.web.base_url}/{config.devpi.index}/+simple/"
        page = requests.get(f"{index}snoop/", headers={"Accept": PEP691}, timeout=10).json()
        entries = {f["filename"]: f for f in page["files"]}
        assert (
            entries["snoop-1.0-py3-none-any.whl"]["_tfmirror-built-from"]["sha256"] == sdist.sha256
        )
        assert sdist.spec.filename in entries
        status = requests.get(f"{config.web.base_url}/api/status", timeout=10).json()
        assert status["built"][0]["sdist"] == sdist.spec.filename
        venv = make_venv(tmp_path / "node")
        installed = pip_install(venv, index, "--only-binary", ":all:", "snoop")
        assert installed.returncode == 0, installed.stderr

    # A no-op sync builds nothing again.
    again = sync(config)
    assert again.ok and again.built == 0 and again.new == 0


SLEEPER = """
import time

def before_build():
    time.sleep(3600)
"""

HOG = """
def before_build():
    hog = bytearray(3 * 1024**3)
    hog[-1] = 1
"""


def test_a_build_that_hangs_or_hogs_is_stopped_and_the_last_closure_stays(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("plain", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["plain"])
    assert sync(config).ok
    before = files(config, "default", LINUX_ID)
    upstream.add_sdist(SdistSpec("sleeper", "1.0", in_tree_backend("sleeper", "1.0", [], SLEEPER)))
    upstream.add_sdist(SdistSpec("hog", "1.0", in_tree_backend("hog", "1.0", [], HOG)))
    later = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        ["plain", "sleeper"],
        environments={"greedy": {"requirements": ["hog"], "targets": [LINUX]}},
        pypi={"build_timeout": 15, "build_memory_mb": 1024},
    )
    later = Config(config.storage, config.devpi, later.pypi, config.web)

    report = sync(later)

    reasons = {f.name: f.reason for f in report.failures}
    slow = reasons[f"default/{LINUX_ID}"]
    assert "sleeper 1.0: building sleeper-1.0.tar.gz failed in the sandbox" in slow
    assert "stopped at the 15 s time limit ([pypi] build_timeout)" in slow
    greedy = reasons[f"greedy/{LINUX_ID}"]
    assert "hog 1.0: building hog-1.0.tar.gz failed" in greedy and "MemoryError" in greedy
    assert files(config, "default", LINUX_ID) == before  # the last closure stays served
    leftover = subprocess.run(["pgrep", "-f", "tfmirror-build-"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a build outlived its time limit"


def test_refuse_keeps_the_wheels_only_rule(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add_sdist(SdistSpec("onlysrc", "1.0", in_tree_backend("onlysrc", "1.0")))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["onlysrc"], pypi={"sdists": "refuse"}
    )
    report = sync(config)
    (failure,) = report.failures
    assert failure.name == f"default/{LINUX_ID}" and "onlysrc" in failure.reason
    assert report.built == 0


def test_an_older_release_with_a_wheel_is_taken_before_the_newest_is_built(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # pip's --prefer-binary: a wheel built here, on this host's glibc, may not install on
    # an older target, and a build runs upstream's code. Build only what must be built.
    upstream.add(WheelSpec("aged", "1.0"))
    upstream.add_sdist(SdistSpec("aged", "2.0", in_tree_backend("aged", "2.0")))
    config = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        [],
        environments={
            "loose": {"requirements": ["aged"], "targets": [LINUX]},
            "strict": {"requirements": ["aged>=2"], "targets": [LINUX]},
        },
    )
    report = sync(config)
    assert report.ok, report.failures
    loose, strict = files(config, "loose", LINUX_ID), files(config, "strict", LINUX_ID)
    assert "aged-1.0-py3-none-any.whl" in loose and not any("2.0" in f for f in loose)
    assert strict["aged-2.0-py3-none-any.whl"].built_from is not None
    assert report.built == 1


# -- live PyPI: real sdist-only projects -------------------------------------------------


@pytest.fixture
def python310() -> str:
    found = find_interpreter(Target("3.10", "manylinux_2_17_x86_64"))
    if found is None:
        pytest.skip("needs a Python 3.10 (pyenv install 3.10) to build an extension for it")
    return found.path


def airgapped(
    command: list[str], services: list[tuple[str, int]]
) -> subprocess.CompletedProcess[str]:
    """Run `command` where only the mirror's services answer (unshare -n, bridged)."""
    if not netns.can_unshare():
        pytest.skip("needs unshare -n (root)")
    bridges, opened = [], []
    try:
        for host, port in services:
            sock = Path(tempfile.gettempdir()) / f"tfmirror-test-{uuid.uuid4().hex[:8]}.sock"
            opened.append(netns.HostBridge(sock, host, port))
            bridges.append((sock, host, port))
        return subprocess.run(
            netns.wrap(command, bridges),
            capture_output=True,
            text=True,
            env=clean_pip_env(),
            timeout=600,
        )
    finally:
        for bridge in opened:
            bridge.close()


@pytest.fixture
def fronted(tmp_path: Path, devpi: DevpiConfig, python310: str) -> Iterator[Config]:
    config = make_config(
        tmp_path,
        "https://pypi.org/simple/",
        devpi,
        [],
        # pip 19.3.1: the oldest pip that runs on 3.10 and 3.11, the clients old images hold.
        environments={
            "svc": {"requirements": ["docopt", "crcmod", "pip==19.3.1"], "targets": [LINUX, PY310]}
        },
        pypi={"timeout": 60, "retries": 3},
    )
    with WebServer(create_app(config), config.web.host, config.web.port):
        yield config


@pytest.mark.live
def test_live_sdist_only_projects_install_air_gapped_on_two_pythons(
    fronted: Config, python310: str, tmp_path: Path
) -> None:
    config = fronted
    report = sync(config)
    assert report.ok, report.failures
    assert report.built == 3  # docopt once (pure), crcmod for 3.11 and for 3.10

    py311, py310 = (
        files(config, "svc", LINUX_ID),
        files(config, "svc", "py3.10-manylinux_2_17_x86_64"),
    )
    docopt = py311["docopt-0.6.2-py2.py3-none-any.whl"]
    assert py310[docopt.filename].sha256 == docopt.sha256  # built once, used by both
    crcmod310 = next(w for n, w in py310.items() if n.startswith("crcmod-1.7-cp310-cp310-"))
    # Tagged for the glibc its symbols need, never the build host's linux_x86_64.
    assert (
        "manylinux_2_5_x86_64" in crcmod310.filename
        and "linux_x86_64.whl" not in crcmod310.filename.replace("manylinux", "")
    )
    assert crcmod310.built_from is not None and crcmod310.built_from.python.startswith(
        "CPython 3.10"
    )
    assert any(w.role is Role.BUILD and w.project == "setuptools" for w in py310.values())
    assert py310["crcmod-1.7.tar.gz"].role is Role.SOURCE

    # Nodes on each Python install wheels only, with nothing but the mirror reachable,
    # with the pip their image has (the venv's) and with the oldest pip that Python runs:
    # pip 19.3 asks for text/html and knows neither PEP 691 nor PEP 600 tags.
    index = f"{config.web.base_url}/{config.devpi.user}/svc/+simple/"
    services = [("127.0.0.1", config.web.port), config.devpi.host_port]
    check = "import crcmod._crcfunext, docopt; print(crcmod.Crc(0x104c11db7).new(b'x').hexdigest())"
    for python in (sys.executable, python310):
        venv = tmp_path / f"node-{Path(python).name}"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--only-binary", ":all:"]
        installed = airgapped([*pip, "--index-url", index, "docopt", "crcmod"], services)
        assert installed.returncode == 0, installed.stderr
        old = airgapped([*pip, "--index-url", index, "pip==19.3.1"], services)
        assert old.returncode == 0, old.stderr
        again = airgapped(
            [*pip, "--force-reinstall", "--index-url", index, "docopt", "crcmod"], services
        )
        assert (
            again.returncode == 0
            and "pip 19.3.1"
            in subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "--version"],
                capture_output=True,
                text=True,
            ).stdout
        ), again.stderr
        imported = subprocess.run(
            [str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True
        )
        assert imported.returncode == 0, imported.stderr

    # Nothing is built again; a pure rebuild elsewhere is the same bytes.
    assert sync(config).built == 0
    other = make_config(
        tmp_path / "elsewhere",
        "https://pypi.org/simple/",
        config.devpi,
        ["docopt"],
        pypi={"timeout": 60, "retries": 3},
    )
    (tmp_path / "elsewhere").mkdir()
    store = open_store(other.storage)
    assert PypiSync(other, store, None).run().built == 1
    rebuilt = load_manifest(store, "default", LINUX_ID)
    assert rebuilt is not None
    assert {w.filename: w.sha256 for w in rebuilt.files}[docopt.filename] == docopt.sha256
    assert os.environ.get("TFMIRROR_DEVPI_PASSWORD") not in json.dumps(
        [w.as_json() for w in rebuilt.files]
    )


BACKENDS = {
    "hatchling": 'requires = ["hatchling"]\nbuild-backend = "hatchling.build"',
    "pdm-backend": 'requires = ["pdm-backend"]\nbuild-backend = "pdm.backend"',
    "flit-core": 'requires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"',
    "poetry-core": 'requires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"',
    "setuptools": 'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"',
}


@pytest.mark.live
def test_live_nodes_build_their_own_projects_with_any_backend_offline(
    devpi: DevpiConfig, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        "https://pypi.org/simple/",
        devpi,
        [],
        environments={"ci": {"requirements": ["six"], "targets": [LINUX]}},
        pypi={"timeout": 60, "retries": 3, "build_backends": [*BACKENDS, "wheel"]},
    )
    report = sync(config)
    assert report.ok and not report.notes, (report.failures, report.notes)
    mirrored = files(config, "ci", LINUX_ID)
    assert (
        mirrored["six-" + next(n for n in mirrored if n.startswith("six-"))[4:]].role
        is Role.CLOSURE
    )
    tools = {w.project for w in mirrored.values() if w.role is Role.BUILD}
    assert {"hatchling", "pdm-backend", "flit-core", "poetry-core", "setuptools", "wheel"} <= tools

    with WebServer(create_app(config), config.web.host, config.web.port):
        index = f"{config.web.base_url}/{config.devpi.user}/ci/+simple/"
        services = [("127.0.0.1", config.web.port), config.devpi.host_port]
        venv = tmp_path / "node"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for backend, build_system in BACKENDS.items():
            name = f"proj_{backend.replace('-', '_')}"
            project = tmp_path / name
            (project / name).mkdir(parents=True)
            (project / name / "__init__.py").write_text('"""A node\'s own project."""\n')
            (project / "pyproject.toml").write_text(
                f'[build-system]\n{build_system}\n\n[project]\nname = "{name}"\n'
                'version = "1.0"\ndescription = "x"\ndependencies = ["six"]\n'
            )
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--index-url", index]
            installed = airgapped([*pip, str(project)], services)
            assert installed.returncode == 0, (backend, installed.stderr[-2000:])


@pytest.mark.live
def test_live_poetry_and_pdm_lock_against_an_environments_index_alone(
    devpi: DevpiConfig, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        "https://pypi.org/simple/",
        devpi,
        [],
        environments={"apps": {"requirements": ["six", "docopt"], "targets": [LINUX]}},
        pypi={"timeout": 60, "retries": 3},
    )
    assert sync(config).ok
    # The tools themselves come from PyPI (a developer's machine has them); only their
    # lock runs where nothing but the mirror answers. Pinned: newer pdm and the unearth
    # and hishel it takes from PyPI today do not start (an httpx fork, a changed API).
    uv = [sys.executable, "-m", "uv"]
    tools = {"pdm": ["pdm==2.26.2", "unearth<0.19", "hishel<1"], "poetry": ["poetry"]}
    for tool, wanted in tools.items():  # each in its own venv: their pins differ
        venv = tmp_path / tool
        subprocess.run([*uv, "venv", "-q", str(venv), "--python", sys.executable], check=True)
        got = subprocess.run(
            [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *wanted],
            capture_output=True,
            text=True,
            check=False,
        )
        assert got.returncode == 0, got.stderr
    with WebServer(create_app(config), config.web.host, config.web.port):
        index = f"{config.web.base_url}/{config.devpi.user}/apps/+simple/"
        services = [("127.0.0.1", config.web.port), config.devpi.host_port]
        project = tmp_path / "app"
        project.mkdir()
        (project / "pyproject.toml").write_text(f"""
[project]
name = "app"
version = "1.0"
requires-python = ">=3.11"
dependencies = ["six", "docopt"]

[[tool.pdm.source]]
name = "pypi"
url = "{index}"

[[tool.poetry.source]]
name = "mirror"
url = "{index}"
priority = "primary"
""")
        env = f"HOME={tmp_path / 'home'} PDM_CHECK_UPDATE=false"
        for tool in tools:
            command = f"cd {project} && {env} {tmp_path / tool / 'bin' / tool} lock"
            locked = airgapped(["sh", "-c", command], services)
            assert locked.returncode == 0, (tool, locked.stdout[-1500:], locked.stderr[-1500:])
        assert "docopt" in (project / "pdm.lock").read_text()
        poetry_lock = (project / "poetry.lock").read_text()
        assert 'name = "docopt"' in poetry_lock and "0.6.2" in poetry_lock
