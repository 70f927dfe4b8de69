"""The leader lock across processes: on S3 (moto_server) and on local disk."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.core.config import StorageConfig
from mirror.core.lease import FileLock, S3Lock, renewed
from mirror.core.storage import LocalStore, S3Store
from testkit.servers import MotoServer

ROOT = Path(__file__).resolve().parents[2]


def worker(  # type: ignore[no-untyped-def]
    moto: MotoServer,
    bucket: str,
    log: Path,
    seconds: float,
    job: float,
    ttl: float,
    host: str = "",
):
    """A scheduler-like process; with `host`, it runs under that hostname (a UTS
    namespace of its own: another machine, as far as leases can tell)."""
    prefix = ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$0" "$@"'] if host else []
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "tests.support.lock_worker",
            moto.url,
            bucket,
            str(log),
            str(seconds),
            str(job),
            str(ttl),
        ],
        cwd=ROOT,
    )


def intervals(log: Path) -> dict[str, list[tuple[float, float]]]:
    runs: dict[str, list[tuple[float, float]]] = {}
    starts: dict[str, float] = {}
    for line in log.read_text().splitlines():
        pid, what, when = line.split()
        if what == "start":
            starts[pid] = float(when)
        elif what == "end":
            runs.setdefault(pid, []).append((starts.pop(pid), float(when)))
    return runs


def test_two_schedulers_on_one_s3_never_run_a_job_at_once(
    moto: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    procs = [worker(moto, s3_bucket, log, 6, 0.4, 10) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0

    runs = intervals(log)
    everything = sorted(span for spans in runs.values() for span in spans)
    assert len(everything) >= 8
    for (_, end), (next_start, _) in itertools.pairwise(everything):
        assert next_start >= end, "two runs of the same job overlapped"
    assert len(runs) == 2, "both schedulers should have won the lock at some point"
    assert " busy " in log.read_text()


@pytest.mark.parametrize("where", ["another host", "this host"])
def test_lease_of_a_killed_holder_is_taken_over(
    moto: MotoServer, s3_bucket: str, tmp_path: Path, where: str
) -> None:
    """Another host's dead holder: after its lease expires. One of this host's: at once
    (its process is gone, so its lease can never be renewed or released)."""
    if where == "another host" and (os.geteuid() != 0 or shutil.which("unshare") is None):
        pytest.skip("another hostname needs root and unshare -u")
    log = tmp_path / "runs.log"
    ttl = 3.0
    host = "replica-elsewhere" if where == "another host" else ""
    holder = worker(moto, s3_bucket, log, 60, 60, ttl, host)  # one very long run
    deadline = time.time() + 30
    while " start " not in (log.read_text() if log.exists() else ""):
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.5)  # let it renew at least once (every ttl/3)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed_at = time.time()

    store = S3Store(StorageConfig(backend="s3", bucket=s3_bucket, endpoint_url=moto.url))
    lock = store.leader_lock(ttl)
    if where == "this host":
        lease = lock.acquire("demo")
        assert lease is not None, "a dead local holder's lease should be taken at once"
        assert store.leader_lock(ttl).acquire("demo") is None
        lease.release()
        return
    assert lock.acquire("demo") is None, "the dead holder's lease is still valid"
    lease = None
    while lease is None:
        assert time.time() - killed_at < ttl + 10
        time.sleep(0.1)
        lease = lock.acquire("demo")
    waited = time.time() - killed_at
    assert 0 < waited <= ttl + 1.5
    # And the new holder's lease now excludes everyone else.
    assert store.leader_lock(ttl).acquire("demo") is None
    lease.release()
    assert store.leader_lock(ttl).acquire("demo") is not None


def test_file_lock_excludes_and_dies_with_its_holder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mirror.core.lease import FileLock\n"
        f"lease = FileLock(Path({str(store.root)!r})).acquire('pypi')\n"
        "print('held' if lease else 'busy', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert FileLock(store.root).acquire("pypi") is None
    assert FileLock(store.root).acquire("hub") is not None  # one lock per job
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lease = FileLock(store.root).acquire("pypi")
    assert lease is not None
    lease.release()


def test_a_live_holder_whose_clock_is_an_hour_behind_keeps_its_lease(
    moto: MotoServer, s3_bucket: str
) -> None:
    """Two replicas' clocks disagree: the lease the slow one writes "expired" an hour
    ago by the other's clock. It is renewed all the same, so nobody may take it; once
    its renewals stop (a pause, a crash), it is taken after one ttl unrenewed."""
    ttl = 2.0
    config = StorageConfig(backend="s3", bucket=s3_bucket, endpoint_url=moto.url)
    behind = S3Store(config).leader_lock(ttl)
    assert isinstance(behind, S3Lock)
    behind.clock = lambda: time.time() - 3600
    lease = behind.acquire("skewed")
    assert lease is not None
    other = S3Store(config).leader_lock(ttl)
    with renewed(lease, ttl):
        watch_until = time.monotonic() + 3 * ttl
        while time.monotonic() < watch_until:
            taken = other.acquire("skewed")
            assert taken is None, "a renewed lease was taken over for its writer's clock"
            time.sleep(0.2)
        # The holder stops renewing without releasing: paused, or gone elsewhere.
        lease.release = lambda: None  # type: ignore[method-assign]
    stopped = time.monotonic()
    taken = None
    while taken is None:
        assert time.monotonic() - stopped < 3 * ttl, "an unrenewed lease was never taken"
        time.sleep(0.1)
        taken = other.acquire("skewed")
    assert time.monotonic() - stopped >= ttl / 2  # not at once: after going unrenewed
    taken.release()


def test_a_holder_paused_past_its_lease_does_not_commit_after_it_is_taken(
    moto: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    """SIGSTOP (a GC pause, a slow disk) past the lease: another replica takes it over;
    woken, the old holder reaches its commit and must not make it."""
    log = tmp_path / "runs.log"
    ttl = 3.0
    holder = worker(moto, s3_bucket, log, 20, 6, ttl)  # one run of 6 s, then busy
    deadline = time.time() + 30
    while " start " not in (log.read_text() if log.exists() else ""):
        assert time.time() < deadline
        time.sleep(0.05)
    holder.send_signal(signal.SIGSTOP)
    try:
        store = S3Store(StorageConfig(backend="s3", bucket=s3_bucket, endpoint_url=moto.url))
        lock = store.leader_lock(ttl)
        lease = None
        while lease is None:
            assert time.time() < deadline + 30, "the paused holder's lease was never taken"
            time.sleep(0.1)
            lease = lock.acquire("demo")
        with renewed(lease, ttl):
            holder.send_signal(signal.SIGCONT)
            while " fenced " not in log.read_text() and " end " not in log.read_text():
                assert time.time() < deadline + 60
                time.sleep(0.1)
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
    lines = log.read_text().split()
    assert "fenced" in lines and "end" not in lines, log.read_text()


def test_a_lease_another_holder_took_and_released_is_lost_at_the_next_renewal(
    moto: MotoServer, s3_bucket: str
) -> None:
    # A paused holder wakes after the replica that took its lease over finished and
    # released it: no object is left at its ETag. Before, each renewal raised NoSuchKey,
    # was logged as "the store is unreachable" and retried, and the lease never counted
    # as lost.
    store = S3Store(StorageConfig(backend="s3", bucket=s3_bucket, endpoint_url=moto.url))
    lease = store.leader_lock(5).acquire("released")
    assert lease is not None
    taker = store.leader_lock(5)
    assert isinstance(taker, S3Lock)
    taker.client.delete_object(Bucket=s3_bucket, Key=taker.key("released"))

    assert lease.renew() is False
    assert lease.left() == 0.0
