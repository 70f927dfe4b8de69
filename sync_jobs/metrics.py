"""Prometheus text for /metrics, from the status document (prometheus-client)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mirror.core.contract_changes import STATES
from mirror.core.runs import Outcome
from sync_jobs.status import Status


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


class _StatusCollector:
    """The status document's metrics, one family of families per section of the page."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._inventory()
        yield from self._lag()
        yield from self._snapshots()
        yield from self._model_fit()
        yield from self._contracts()
        yield from self._licenses()
        yield from self._advisories()
        yield from self._verification()
        yield from self._follow()

    def _jobs(self) -> Iterator[Metric]:
        def job_gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"tfmirror_job_{name}", text, labels=["job", *labels])

        success = job_gauge("last_success_timestamp_seconds", "End of the last successful run")
        started = job_gauge("last_run_timestamp_seconds", "Start of the last run")
        duration = job_gauge("last_run_duration_seconds", "Duration of the last run")
        ok = job_gauge("last_run_ok", "1 if the last run succeeded, else 0")
        moved = job_gauge("last_run_bytes", "Bytes the last run moved")
        files = job_gauge("last_run_files", "Files by outcome in the last run", "outcome")
        runs = CounterMetricFamily("tfmirror_job_runs", "Runs recorded", labels=["job"])
        failures = CounterMetricFamily("tfmirror_job_failures", "Failed runs", labels=["job"])
        for job in self.status.jobs:
            name = job.job
            if (when := _ts(job.last_success)) is not None:
                success.add_metric([name], when)
            last = job.last_run
            if last:
                started.add_metric([name], _ts(last.start) or 0)
                duration.add_metric([name], last.seconds)
                ok.add_metric([name], 1.0 if last.outcome is Outcome.OK else 0.0)
                moved.add_metric([name], last.bytes)
                for outcome, count in sorted(last.counts.items()):
                    files.add_metric([name, outcome], count)
            runs.add_metric([name], job.totals.runs)
            failures.add_metric([name], job.totals.failed)
        yield from (success, started, duration, ok, moved, files, runs, failures)

    def _inventory(self) -> Iterator[Metric]:
        inventory = self.status.inventory
        store = GaugeMetricFamily(
            "tfmirror_store_bytes", "Bytes the manifests reference", labels=["kind"]
        )
        store.add_metric(["pypi"], inventory.pypi_bytes)
        store.add_metric(["hub"], inventory.hub_bytes)
        yield store
        target_files = GaugeMetricFamily(
            "tfmirror_target_files",
            "Files mirrored per environment and target",
            labels=["environment", "target"],
        )
        target_bytes = GaugeMetricFamily(
            "tfmirror_target_bytes",
            "Bytes of the files mirrored per environment and target",
            labels=["environment", "target"],
        )
        target_ok = GaugeMetricFamily(
            "tfmirror_target_last_sync_ok",
            "0 if the last PyPI sync failed this environment's target, else 1",
            labels=["environment", "target"],
        )
        for env in inventory.environments:
            for target in env.targets:
                labels = [env.name, target.target]
                target_files.add_metric(labels, target.files)
                target_bytes.add_metric(labels, target.bytes)
                target_ok.add_metric(labels, 0.0 if target.last_sync == "failed" else 1.0)
        yield from (target_files, target_bytes, target_ok)
        models = GaugeMetricFamily("tfmirror_models", "TF Hub models mirrored")
        models.add_metric([], len(inventory.models))
        yield models

    def _lag(self) -> Iterator[Metric]:
        behind = GaugeMetricFamily(
            "tfmirror_requirement_behind_upstream",
            "1 if upstream has a newer version than the environment mirrors that its pin allows",
            labels=["environment", "project"],
        )
        for row in self.status.lag:
            behind.add_metric([row.environment, row.project], 1.0 if row.behind else 0.0)
        yield behind

    def _snapshots(self) -> Iterator[Metric]:
        on = self.status.promoted
        promoted = GaugeMetricFamily(
            "tfmirror_promoted_snapshot",
            "1 for the snapshot the fleet's default paths serve (none: the live mirror)",
            labels=["snapshot"],
        )
        if on.snapshot:
            promoted.add_metric([on.snapshot], 1.0)
        beyond = GaugeMetricFamily(
            "tfmirror_live_beyond_promoted",
            "Projects and models the live mirror changed since the promoted snapshot",
        )
        beyond.add_metric([], sum(len(rows) for rows in on.live_beyond.values()))
        snapshots = GaugeMetricFamily("tfmirror_snapshots", "Snapshots held")
        snapshots.add_metric([], len(self.status.snapshots))
        yield from (promoted, beyond, snapshots)

    def _model_fit(self) -> Iterator[Metric]:
        fit = GaugeMetricFamily(
            "tfmirror_model_environment_pairs",
            "Models x environments by what the last check found: ok, incompatible, unchecked",
            labels=["status"],
        )
        for status in ("ok", "incompatible", "unchecked"):
            fit.add_metric([status], sum(1 for p in self.status.model_fit if p.status == status))
        yield fit

    def _contracts(self) -> Iterator[Metric]:
        contracts = GaugeMetricFamily(
            "tfmirror_model_contracts",
            "Served models with a pinned contract, by what their version's contract is to it",
            labels=["state"],
        )
        for state in STATES:
            served = sum(1 for m in self.status.inventory.models if m.contract == state)
            contracts.add_metric([state], served)
        yield contracts

    def _licenses(self) -> Iterator[Metric]:
        # As many series as distinct licences served: a handful, bounded by the models.
        licenses = GaugeMetricFamily(
            "tfmirror_models_by_license",
            "Served models by their licence (SPDX id, else as upstream names it, or unknown)",
            labels=["license"],
        )
        for license, served in sorted(
            Counter(m.license for m in self.status.inventory.models).items()
        ):
            licenses.add_metric([license], served)
        yield licenses

    def _advisories(self) -> Iterator[Metric]:
        # Every severity of every environment, zeros too: an alert can say "> 0".
        if not self.status.advisories:
            return
        advisories = GaugeMetricFamily(
            "tfmirror_advisories",
            "Known vulnerabilities in each environment's closure, by severity (waived ones too)",
            labels=["environment", "severity"],
        )
        for env, rows in sorted(self.status.advisories.items()):
            counts = Counter(r.severity for r in rows)
            for severity in ("unknown", "low", "medium", "high", "critical"):
                advisories.add_metric([env, severity], counts[severity])
        yield advisories

    def _verification(self) -> Iterator[Metric]:
        verification = self.status.verification
        if not verification:
            return
        ok = GaugeMetricFamily("tfmirror_verify_ok", "1 if the last verify found no problem")
        ok.add_metric([], 1.0 if verification["outcome"] == Outcome.OK else 0.0)
        problems = GaugeMetricFamily("tfmirror_verify_problems", "Problems the last verify left")
        problems.add_metric([], len(verification.get("problems", [])))
        checked = GaugeMetricFamily(
            "tfmirror_verify_bytes_checked", "Bytes the last verify re-hashed"
        )
        checked.add_metric([], verification.get("bytes_checked", 0))
        yield from (ok, problems, checked)

    def _follow(self) -> Iterator[Metric]:
        """A site: its lag behind its centre; a centre: each follower's."""
        site, followers = self.status.follow, self.status.followers
        if site is not None:
            for name, text, value in (
                ("lag_seconds", "Seconds since the last good pull, while behind", site.lag_seconds),
                ("entries_behind", "Centre journal entries not held here", site.entries_behind),
                (
                    "last_success_timestamp_seconds",
                    "End of the last pull that succeeded",
                    _ts(site.last_success) or 0.0,
                ),
                ("centre_reachable", "0 while the centre does not answer", not site.unreachable),
            ):
                gauge = GaugeMetricFamily(f"tfmirror_follow_{name}", text, labels=["centre"])
                gauge.add_metric([site.url], float(value))
                yield gauge
        if followers:
            behind = GaugeMetricFamily(
                "tfmirror_follower_entries_behind", "A follower's lag", labels=["follower"]
            )
            lag = GaugeMetricFamily(
                "tfmirror_follower_lag_seconds",
                "Age of the oldest entry it lacks",
                labels=["follower"],
            )
            for f in followers:
                behind.add_metric([f.name], f.entries_behind)
                lag.add_metric([f.name], f.lag_seconds)
            yield from (behind, lag)


def render_metrics(status: Status) -> bytes:
    registry = CollectorRegistry()
    registry.register(_StatusCollector(status))
    return generate_latest(registry)
