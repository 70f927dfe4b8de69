"""Hostile sdists, third round: what a sandboxed build *can* read, reach and leave behind.

Each sdist is a dependency with no wheel, served by a local fake PyPI and built by the
real sandbox (bubblewrap, uv) during a real sync with secrets in the syncer's
environment. The build code does what an attacker can: reads every /proc/*/environ and
every readable file it can find, swaps its output for links to the host's files, asks
the index for releases its environment may not have, ships a wheel that lies, forks and
allocates without end. The assertions are on what leaves: the store, the run record,
the reasons a sync prints.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from mirror.core.config import Config, DevpiConfig
from mirror.core.quarantine import add_rules, new_rule
from mirror.core.storage import open_store
from mirror.core.tree_caps import TreeCaps, capped_tree
from mirror.core.web_server import WebServer
from mirror.pypi.manifest import load_manifest
from mirror.pypi.resolve import Wheel
from mirror.pypi.sync import PypiSync, SyncReport
from testkit.mirror_env import make_config, operator_config
from testkit.upstream import Upstream
from testkit.wheels import SdistSpec, WheelSpec, build_wheel, in_tree_backend
from tests.support.processes import command_line, descendants, put_secrets
from tfmirror.app import create_app
from tfmirror.services import services_for_sync

LINUX_ID = "py3.11-manylinux_2_28_x86_64"
PEP691 = "application/vnd.pypi.simple.v1+json"
SECRETS = {
    "TFMIRROR_ADMIN_TOKEN": "admin-secret-7d1e",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-5b2f",
    "KAGGLE_KEY": "kaggle-secret-90aa",
    "TFMIRROR_DEVPI_PASSWORD": "devpi-secret-3c4d",
}
FILE_SECRET = "file-secret-e6f1"  # in the config, the bundle key, the store, devpi's folder


pytestmark = pytest.mark.usefixtures("bubblewrap")


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return put_secrets(monkeypatch, SECRETS)


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sync(config: Config) -> SyncReport:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        return PypiSync(config, store, devpi).run()


def built_and_seen(config: Config, project: str) -> tuple[Wheel, dict[str, Any]]:
    """The wheel built for `project` (1.0, pure) as committed, and what its build saw:
    the `<project>/seen.json` its hostile code put inside."""
    store = open_store(config.storage)
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None, "nothing committed"
    built = next(w for w in manifest.files if w.filename == f"{project}-1.0-py3-none-any.whl")
    with store.open_blob(built.sha256) as blob:
        seen = json.loads(zipfile.ZipFile(io.BytesIO(blob.read())).read(f"{project}/seen.json"))
    return built, seen


def every_byte_kept(config: Config) -> bytes:
    """Every file of the store (blobs, manifests, run records, state) and every wheel's
    members unpacked: what the mirror keeps and serves."""
    root = Path(str(config.storage.path))
    out = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        out.append(data)
        if data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    out += [zf.read(n) for n in zf.namelist()]
            except zipfile.BadZipFile:
                pass
    return b"\n".join(out)


def plant_file_secrets(config: Config, devpi: DevpiConfig, tmp_path: Path) -> list[Path]:
    """The secret files a syncer's host holds, each with FILE_SECRET inside."""
    planted = [
        tmp_path / "tfmirror.toml",
        tmp_path / "bundle.key",
        Path(str(config.storage.path)) / "state" / "planted-secret.json",
        Path(str(devpi.serverdir)) / "planted-secret.txt",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# secret: {FILE_SECRET}\n")
    return planted


# Everything a build can read: every process's environment and command line it can see,
# and every readable file under the places a host keeps its own things, and the
# interpreter's and tools' folders it was given.
HUNT = """
import json, os, sys

def _hunt(markers):
    found, environs, looked = [], {{}}, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{{pid}}/{{what}}", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            environs[f"{{pid}}/{{what}}"] = data.decode("utf-8", "replace")
    roots = ["/etc", "/tmp", "/run", os.getcwd(), "/work", "/root", "/home", "/var", "/srv", "/opt",
             "/mnt", "/media", sys.prefix, sys.base_prefix]
    for root in roots:
        for folder, dirs, files in os.walk(root):
            # Installed packages are the same on every machine: skipped to stay quick.
            dirs[:] = [d for d in dirs if d not in ("site-packages", "__pycache__")]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if os.path.getsize(path) > 2_000_000:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                looked += 1
                for marker in markers:
                    if marker.encode() in data:
                        found.append(path)
    return {{"found": found, "environs": environs, "looked": looked}}

def before_build():
    # Reversed in this source, so the hunt does not find its own text.
    seen = _hunt([m[::-1] for m in {markers!r}])
    EXTRA["hunt/seen.json"] = json.dumps(seen)
    print(json.dumps(seen))
"""


def test_a_build_that_reads_everything_it_can_finds_no_secret_and_ships_none(
    upstream: Upstream,
    devpi: DevpiConfig,
    tmp_path: Path,
    secrets: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    markers = [*secrets.values(), FILE_SECRET]
    upstream.add(WheelSpec("plain", "1.0"))
    backend = in_tree_backend(
        "hunt", "1.0", ["plain"], HUNT.format(markers=[m[::-1] for m in markers])
    )
    upstream.add_sdist(SdistSpec("hunt", "1.0", backend, ["plain"]))
    config = make_config(tmp_path, upstream.index_url, devpi, ["hunt"], pypi={"build_timeout": 120})
    plant_file_secrets(config, devpi, tmp_path)

    report = sync(config)

    assert report.ok, report.failures
    _, seen = built_and_seen(config, "hunt")
    # It looked (the hunt ran, saw processes and files) and found nothing.
    assert seen["environs"] and seen["looked"] > 0
    assert seen["found"] == []
    for value in markers:
        assert value not in json.dumps(seen["environs"]), "a process inside holds a secret"
    # Nothing the mirror keeps or serves carries one.
    kept = every_byte_kept(config)
    for value in markers:
        if value == FILE_SECRET:
            continue  # planted in the store on purpose (state/planted-secret.json)
        assert value.encode() not in kept
    # Nor anything the fleet and the operator are served: the index pages, the built
    # wheel's bytes, the status page, its API and metrics; nor the sync's log.
    with WebServer(create_app(config), config.web.host, config.web.port):
        base = config.web.base_url
        index = f"{base}/{config.devpi.index}/+simple/"
        served = [requests.get(url, timeout=30).content for url in (
            f"{index}hunt/", f"{base}/simple/hunt/", f"{base}/", f"{base}/api/status",
            f"{base}/metrics",
        )]  # fmt: skip
        links = requests.get(f"{index}hunt/", headers={"Accept": PEP691}, timeout=30).json()
        for file in links["files"]:
            served.append(
                requests.get(requests.compat.urljoin(index, file["url"]), timeout=60).content
            )
    served.append(caplog.text.encode())
    for value in markers:
        assert not any(value.encode() in body for body in served), value


LINKER = """
import os

def before_build():
    # Everything the host side might open after the build, swapped for links to the
    # host's secret files (paths as the host sees them), then a failure: the host's
    # report of the failure is what would carry them out.
    work = os.getcwd()  # the build runs in its work folder
    for name in ("sandbox.log", "declared.json", "pylock.toml", "build.log"):
        try:
            os.remove(f"{{work}}/{{name}}")
        except OSError:
            pass
        os.symlink({secret!r}, f"{{work}}/{{name}}")
    os.rename(f"{{work}}/out", f"{{work}}/out-was")
    os.symlink({wheels!r}, f"{{work}}/out")
    if {fail!r}:
        raise SystemExit("failing on purpose")
"""


@pytest.mark.parametrize("fail", [True, False], ids=["fails", "succeeds"])
def test_links_left_in_the_build_folder_lead_nowhere(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, fail: bool
) -> None:
    upstream.add(WheelSpec("plain", "1.0"))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["linker"], pypi={"build_timeout": 60}
    )
    secret = plant_file_secrets(config, devpi, tmp_path)[1]  # the bundle key
    # A folder of the host's holding a wheel by the name the build should make: a link
    # to it must not be taken for the build's output.
    wheels = tmp_path / "host-wheels"
    wheels.mkdir()
    (wheels / "linker-1.0-py3-none-any.whl").write_bytes(build_wheel(WheelSpec("linker", "1.0")))
    code = LINKER.format(secret=str(secret), wheels=str(wheels), fail=fail)
    backend = in_tree_backend("linker", "1.0", ["plain"], code)
    upstream.add_sdist(SdistSpec("linker", "1.0", backend, ["plain"]))

    report = sync(config)

    assert not report.ok
    reasons = " ".join(f.reason for f in report.failures)
    assert "linker 1.0" in reasons
    assert FILE_SECRET not in reasons
    record = open_store(config.storage).get("runs/pypi/latest.json") or b""
    assert FILE_SECRET.encode() not in record
    assert load_manifest(open_store(config.storage), "default", LINUX_ID) is None


REACHER = """
import json, urllib.request

def _get(path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:8000{{path}}", timeout=20) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError as exc:
        return type(exc).__name__, b""

def before_build():
    seen = {{}}
    for project in ("young", "unrelated", "takendown"):
        for prefix in ("", "/cooldown/0", "/cooldown/9999999999"):
            status, body = _get(f"{{prefix}}/simple/{{project}}/")
            files = json.loads(body)["files"] if status == 200 else []
            seen[f"{{prefix}}/simple/{{project}}/"] = [f["filename"] for f in files]
    for sha, name in {files!r}:
        seen[name] = _get(f"/files/{{sha}}/{{name}}")[0]
    EXTRA["reach/seen.json"] = json.dumps(seen)
"""


def test_a_build_sees_only_what_its_environment_may_and_keeps_nothing_it_fetched_unasked(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("plain", "1.0"), uploaded=ago(days=30))
    young = upstream.add(WheelSpec("young", "2.0"), uploaded=ago(hours=1))
    older = upstream.add(WheelSpec("young", "1.0"), uploaded=ago(days=30))
    unrelated = upstream.add(WheelSpec("unrelated", "1.0"), uploaded=ago(days=30))
    down = upstream.add(WheelSpec("takendown", "1.0"), uploaded=ago(days=30))
    files = [(h.sha256, h.spec.filename) for h in (young, older, unrelated, down)]
    backend = in_tree_backend("reach", "1.0", ["plain"], REACHER.format(files=files))
    upstream.add_sdist(SdistSpec("reach", "1.0", backend, ["plain"]), uploaded=ago(days=30))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["reach"], pypi={"min_age": "7d", "build_timeout": 60}
    )
    store = open_store(config.storage)
    add_rules(store, [new_rule("takendown==1.0", "malware", "ops@test")])

    report = sync(config)

    assert report.ok, report.failures
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    listed = {w.filename for w in manifest.files}
    built, seen = built_and_seen(config, "reach")
    # The environment's view on every path: the young release and the quarantined one
    # are on no page and not served; the old release of young and unrelated are.
    for prefix in ("", "/cooldown/0", "/cooldown/9999999999"):
        assert seen[f"{prefix}/simple/young/"] == ["young-1.0-py3-none-any.whl"], seen
        assert seen[f"{prefix}/simple/takendown/"] == [], seen
    assert seen["young-2.0-py3-none-any.whl"] == 404
    assert seen["takendown-1.0-py3-none-any.whl"] == 404
    assert seen["unrelated-1.0-py3-none-any.whl"] == 200
    assert seen["young-1.0-py3-none-any.whl"] == 200
    # What it fetched unasked is not a build requirement: not mirrored for the fleet.
    assert not listed & {name for _, name in files}, listed
    assert built.built_from is not None and built.built_from.requires == ()


LIAR = """
import os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "liar-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        zf.writestr("liar/__init__.py", "")
        zf.writestr("liar/_native.so", b"\\x7fELF" + b"\\0" * 60)
        zf.writestr({entry!r}, "import os")
        meta = "Metadata-Version: 2.1\\nName: liar\\nVersion: 1.0\\n"
        zf.writestr("liar-1.0.dist-info/METADATA", meta)
        tags = "Root-Is-Purelib: false\\nTag: cp311-cp311-linux_x86_64\\n"
        zf.writestr("liar-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\n" + tags)
        zf.writestr("liar-1.0.dist-info/RECORD", "nothing,sha256=AAAA,1\\n")
    return name
"""


@pytest.mark.parametrize("entry", ["../../../../tmp/x.pth", "/etc/x", "liar/ok.py"])
def test_a_built_wheel_that_lies_is_refused_before_it_is_stored(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, entry: str
) -> None:
    upstream.add(WheelSpec("plain", "1.0"))
    backend = in_tree_backend("liar", "1.0", ["plain"], LIAR.format(entry=entry))
    upstream.add_sdist(SdistSpec("liar", "1.0", backend, ["plain"]))
    config = make_config(tmp_path, upstream.index_url, devpi, ["liar"], pypi={"build_timeout": 60})

    report = sync(config)

    assert not report.ok
    reasons = " ".join(f.reason for f in report.failures)
    assert "the built wheel is refused" in reasons, reasons
    if entry.startswith(("/", "..")):
        assert "not a relative path" in reasons or "leaves its folder" in reasons, reasons
    else:
        assert "tags" in reasons or "native" in reasons or "RECORD" in reasons, reasons
    store = open_store(config.storage)
    assert load_manifest(store, "default", LINUX_ID) is None
    assert not any(b"liar/_native.so" in data for data in _blobs(config))


def _blobs(config: Config) -> list[bytes]:
    root = Path(str(config.storage.path)) / "blobs"
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


HOGS = """
import os, time

def before_build():
    kids = []
    for _ in range({count}):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            if {megabytes}:
                hog = bytearray({megabytes} * 1024 * 1024)
                for i in range(0, len(hog), 4096):
                    hog[i] = 1
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    raise SystemExit(1)
"""


def _cgroup_here() -> bool:
    with capped_tree(TreeCaps(256, 64)) as group:
        return group.version != 0


@pytest.mark.parametrize(
    ("count", "megabytes", "cap"),
    [(2000, 0, "process cap"), (8, 800, "memory cap")],
    ids=["fork-2000", "8x800MB"],
)
def test_a_build_is_capped_as_a_whole_and_says_which_cap_it_hit(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, count: int, megabytes: int, cap: str
) -> None:
    if not _cgroup_here():
        pytest.skip("no cgroup can be made here (not root, or a read-only cgroupfs)")
    upstream.add(WheelSpec("plain", "1.0"))
    code = HOGS.format(count=count, megabytes=megabytes)
    backend = in_tree_backend("hog", "1.0", ["plain"], code)
    upstream.add_sdist(SdistSpec("hog", "1.0", backend, ["plain"]))
    pypi = {"build_timeout": 90, "build_memory_mb": 1024, "build_processes": 128}
    config = make_config(tmp_path, upstream.index_url, devpi, ["hog"], pypi=pypi)

    report = sync(config)

    assert not report.ok
    reasons = " ".join(f.reason for f in report.failures)
    assert cap in reasons, reasons
    assert "[pypi] build_" in reasons


ESCAPER = """
import json, os, socket, sys, time

def _daemon():
    # Double fork and a session of its own, then a process that sleeps for ten minutes
    # with a marker in its command line: it must not outlive its sandbox.
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open("/dev/null", os.O_RDWR)  # a daemon lets go of the build's pipes
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1024)
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)",
                                      {marker!r}])
        os._exit(0)
    time.sleep(0.5)

def before_build():
    _daemon()
    opened = []
    for port in sorted({{8000, *{ports!r}}}):
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as probe:
                probe.settimeout(1)
                if probe.connect_ex((host, port)) == 0:
                    opened.append(port)
    elsewhere = {{}}
    for host in ("10.0.0.1", "169.254.169.254", "192.168.1.1", "8.8.8.8", "::1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.settimeout(1)
            elsewhere[host] = probe.connect_ex((host, 80))
    EXTRA["escape/seen.json"] = json.dumps({{"opened": opened, "elsewhere": elsewhere}})
"""


def _listening() -> set[int]:
    """Every TCP port something on this host listens on (its LISTEN sockets)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_build_reaches_no_port_but_the_index_and_leaves_nothing_running(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    marker = f"tfmirror-daemon-{os.getpid()}-{tmp_path.name}"
    upstream.add(WheelSpec("plain", "1.0"))
    # Every port the host listens on (the upstream, devpi, the session's servers...).
    ports = _listening() | {upstream.server.server_address[1], int(devpi.url.rsplit(":", 1)[1])}
    code = ESCAPER.format(marker=marker, ports=sorted(ports))
    backend = in_tree_backend("escape", "1.0", ["plain"], code)
    upstream.add_sdist(SdistSpec("escape", "1.0", backend, ["plain"]))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["escape"], pypi={"build_timeout": 120}
    )

    report = sync(config)

    assert report.ok, report.failures
    _, seen = built_and_seen(config, "escape")
    # Of the host's listening ports, only the local index's answers inside (it is not
    # the host's: the sandbox's own forwarder); every other address fails.
    assert seen["opened"] == [8000], seen["opened"]
    assert all(code != 0 for code in seen["elsewhere"].values()), seen["elsewhere"]
    assert _processes_with(marker) == []


SLEEPER = """
import time

def before_build():
    time.sleep(3600)
"""


def test_up_stopped_mid_build_stops_the_build_with_it(upstream: Upstream, tmp_path: Path) -> None:
    """SIGTERM while a build sleeps inside its sandbox (build_timeout far away): `up`
    ends within its stop grace and leaves no sandbox process behind."""
    upstream.add(WheelSpec("plain", "1.0"))
    backend = in_tree_backend("sleeper", "1.0", ["plain"], SLEEPER)
    upstream.add_sdist(SdistSpec("sleeper", "1.0", backend, ["plain"]))
    config = operator_config(
        tmp_path, upstream.index_url, ["sleeper"], extra="[proxy]\nenabled = false\n"
    )
    config.write_text(
        config.read_text().replace("retries = 1\n", "retries = 1\nbuild_timeout = 600\n")
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 180
        sandboxes: list[int] = []
        while not sandboxes and time.monotonic() < deadline and up.poll() is None:
            sandboxes = [p for p in descendants(up.pid) if "bwrap" in command_line(p)]
            time.sleep(0.2)
        assert sandboxes, "no build sandbox started"
        time.sleep(2)  # the build is inside, sleeping
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    alive = [p for p in sandboxes if Path(f"/proc/{p}").exists() and command_line(p)]
    assert alive == [], [command_line(p) for p in alive]
