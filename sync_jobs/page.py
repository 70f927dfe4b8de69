"""The operators' status page: plain HTML that reloads itself; one small script for the
jobs' "... now" buttons (they need the admin token in a header, which a form cannot
send)."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mirror.core.journal_text import describe
from mirror.core.sizes import human_bytes
from sync_jobs.status import Status

REFRESH_SECONDS = 30

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.35em .8em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.ok{color:#11691f;font-weight:600}.failed{color:#b00020;font-weight:600}
tr.row-failed td{background:#fdecee}
.badge{display:inline-block;padding:.2em .7em;border-radius:1em;color:#fff}
.badge.ok{background:#1b7f2d}.badge.failed{background:#b00020}.badge.unknown{background:#8a6d00}
code{font-size:.9em}.muted{color:#777}.running{color:#0b57d0;font-weight:600}
svg.history{vertical-align:middle}
"""

SCRIPT = """
async function syncNow(job) {
  let token = sessionStorage.getItem("tfmirror-admin-token");
  if (!token) token = prompt("Admin token (TFMIRROR_ADMIN_TOKEN)");
  if (!token) return;
  const answer = await fetch("/api/jobs/" + job + "/run",
    {method: "POST", headers: {"Authorization": "Bearer " + token}});
  const body = await answer.json();
  const refused = answer.status === 401 || answer.status === 403;
  if (refused) sessionStorage.removeItem("tfmirror-admin-token");
  else sessionStorage.setItem("tfmirror-admin-token", token);
  document.getElementById("message").textContent = job + ": " + body.message;
}
"""


def _when(text: str | None) -> str:
    if not text:
        return Markup('<span class="muted">never</span>')
    try:
        return _plain(text)
    except ValueError:
        return text


# Each job's button says what it starts (all read "Sync now" before, verify and gc too).
BUTTONS = {
    "pypi": "Sync PyPI now",
    "hub": "Sync models now",
    "verify": "Verify now",
    "gc": "Collect garbage now",
    "snapshot": "Snapshot now",
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
            start = _plain(start)
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


_PAGES = Environment(
    loader=PackageLoader("sync_jobs", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_PAGES.filters["size"] = human_bytes
_PAGES.filters["when"] = _when
_PAGES.filters["history"] = _history
_PAGES.filters["button"] = _button
_PAGES.filters["change"] = describe
_PAGES.filters["other_problems"] = _other_problems


def render_page(status: Status) -> str:
    """The page (sync_jobs/templates/status.html; Jinja escapes every value)."""
    template = _PAGES.get_template("status.html")
    return template.render(
        status=status, refresh=REFRESH_SECONDS, style=Markup(STYLE), script=Markup(SCRIPT)
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


_PAGES.globals["headline"] = headline


def render_text(status: Status) -> str:
    """`tfmirror status`: the page's facts as plain text."""
    state, _, why = headline(status).partition(": ")
    lines = ["tfmirror: " + (state if status.healthy else f"{state.upper()}: {why}")]
    for job in status.jobs:
        last = job.last_run
        line = f"  {job.job:6} {job.schedule:16} "
        line += (
            f"last {last.outcome} at {_plain(last.start)} ({last.seconds:.1f} s)"
            if last
            else "never run"
        )
        lines.append(line + (f", next {_plain(job.next_run)}" if job.next_run else ""))
        if job.running_since:
            lines.append(f"         running since {_plain(job.running_since)}")
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


def _plain(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
