"""The operators' status page: plain HTML that reloads itself (a template of the one
page renderer, mirror.core.pages), with one small script for the jobs' "... now" buttons
(they need the admin token in a header, which a form cannot send); and `tfmirror
status`, the same facts as text."""

from __future__ import annotations

from contextlib import suppress

from markupsafe import Markup

from mirror.core.pages import add_filters, add_globals, plain_time, render
from mirror.core.sizes import human_bytes
from sync_jobs.status import Status

REFRESH_SECONDS = 30


# Each job's button says what it starts (all read "Sync now" before, verify and gc too).
BUTTONS = {
    "pypi": "Sync PyPI now",
    "hub": "Sync models now",
    "verify": "Verify now",
    "gc": "Collect garbage now",
    "snapshot": "Snapshot now",
    "advisories": "Sync advisories now",
}


def _button(job: str) -> str:
    return BUTTONS.get(job, f"Run {job} now")


def _other_problems(doc: dict[str, object]) -> list[str]:
    """The verify report's problems the page does not show already in a target's or a
    model's line (each failed target or model is also one of the problems)."""
    shown = set()
    for key, name in (("targets", "target"), ("models", "handle")):
        rows = doc.get(key)
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and not row.get("ok"):
                shown.add(f"{key[:-1]} {row.get(name)}: {row.get('detail')}")
    problems = doc.get("problems")
    return [str(p) for p in (problems if isinstance(problems, list) else []) if p not in shown]


BAR, GAP, HEIGHT = 6, 2, 28  # the history chart: px per run, between runs, tallest bar


def _history(recent: list[dict[str, object]] | None) -> Markup:
    """The last runs as an inline SVG: a bar per run, as tall as it took (relative to the
    longest), red if it failed; each bar's tooltip says when, how long, how many bytes."""
    if not recent:
        return Markup('<span class="muted">no runs</span>')
    longest = max(float(str(run.get("seconds") or 0)) for run in recent) or 1.0
    bars = []
    for i, run in enumerate(recent):
        seconds = float(str(run.get("seconds") or 0))
        tall = max(2, round(HEIGHT * seconds / longest))
        colour = "#1b7f2d" if run.get("ok") else "#b00020"
        size = run.get("bytes")
        start = str(run.get("start", ""))
        with suppress(ValueError):
            start = plain_time(start)
        tip = Markup.escape(
            f"{start}: {seconds:.1f} s, "
            f"{human_bytes(int(size) if isinstance(size, int) else 0)}, "
            f"{'ok' if run.get('ok') else 'failed'}"
        )
        bars.append(
            f'<rect x="{i * (BAR + GAP)}" y="{HEIGHT - tall}" width="{BAR}" height="{tall}" '
            f'fill="{colour}"><title>{tip}</title></rect>'
        )
    width = len(recent) * (BAR + GAP)
    return Markup(
        f'<svg class="history" width="{width}" height="{HEIGHT}" role="img" '
        f'aria-label="the last {len(recent)} runs">{"".join(bars)}</svg>'
    )


def render_page(status: Status) -> str:
    """The page (sync_jobs/templates/status.html, its style and script beside it)."""
    return render(
        "sync_jobs/status.html", title="tfmirror status", status=status, refresh=REFRESH_SECONDS
    )


def headline(status: Status) -> str:
    """The page's badge and `tfmirror status`'s first line: "all jobs ok" only when no
    job failed and every proof job has finished at least once."""
    if status.health == "ok":
        return "all jobs ok"
    if status.health == "failing":
        why = list(status.failing_jobs)
        if status.promoted.missing:
            why.append(f"the promoted snapshot {status.promoted.snapshot} is missing")
        return "failing: " + ", ".join(why)
    never = ", ".join(status.unknown_jobs)
    return f"unknown: {never} has never finished (run tfmirror {status.unknown_jobs[0]})"


add_filters(history=_history, button=_button, other_problems=_other_problems)
add_globals(headline=headline)


def render_text(status: Status) -> str:
    """`tfmirror status`: the page's facts as plain text."""
    state, _, why = headline(status).partition(": ")
    lines = ["tfmirror: " + (state if status.healthy else f"{state.upper()}: {why}")]
    if status.follow is not None:
        f = status.follow
        behind = f"{f.entries_behind} entries behind, at entry {f.held_seq}"
        lines.append("  " + (f.notice or f"following {f.url}: {behind}"))
    for job in status.jobs:
        last = job.last_run
        line = f"  {job.job:6} {job.schedule:16} "
        line += (
            f"last {last.outcome} at {plain_time(last.start)} ({last.seconds:.1f} s)"
            if last
            else "never run"
        )
        lines.append(line + (f", next {plain_time(job.next_run)}" if job.next_run else ""))
        if job.running_since:
            lines.append(f"         running since {plain_time(job.running_since)}")
        if job.last_error:
            lines.append(f"         error: {job.last_error.name}: {job.last_error.reason}")
    for env in status.inventory.environments:
        lines.append(f"  environment {env.name}: {env.index_url}")
        for target in env.targets:
            synced = f"synced {target.synced_at}" if target.synced_at else "not synced yet"
            outcome = f", last sync: {target.last_sync}" if target.last_sync else ""
            size = human_bytes(target.bytes)
            lines.append(f"    {target.target}: {target.files} files, {size}, {synced}{outcome}")
    for built in status.built:
        lines.append(
            f"  built {built.filename} from {built.sdist} with {built.python} "
            f"({', '.join(built.requires) or 'no build requirements'}), {built.built_at}"
        )
    for model in status.inventory.models:
        lines.append(f"  model {model.handle}: {human_bytes(model.size)} {model.sha256[:12]}")
    for row in status.lag:
        state = "behind" if row.behind else "up to date" if row.known else "not known yet"
        outside = (
            f"; {row.newest_release} is outside the pin or the targets' Pythons"
            if row.newest_release
            else ""
        )
        lines.append(
            f"  lag {row.requirement} [{row.environment}]: "
            f"mirrored {', '.join(row.mirrored) or '-'}, "
            f"upstream {row.newest_upstream or '?'} ({state}{outside})"
        )
    verification = status.verification
    lines.append(
        f"  verify: {verification['outcome']} at {verification['end']}"
        if verification
        else "  verify: never run"
    )
    return "\n".join(lines) + "\n"
