"""The operators' status page: plain HTML that reloads itself; one small script for the
"Sync now" buttons (they need the admin token in a header, which a form cannot send)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

REFRESH_SECONDS = 30

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.35em .8em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.ok{color:#11691f;font-weight:600}.failed{color:#b00020;font-weight:600}
tr.row-failed td{background:#fdecee}
.badge{display:inline-block;padding:.2em .7em;border-radius:1em;color:#fff}
.badge.ok{background:#1b7f2d}.badge.failed{background:#b00020}
code{font-size:.9em}.muted{color:#777}
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


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _when(text: str | None) -> str:
    if not text:
        return '<span class="muted">never</span>'
    try:
        return _plain(text)
    except ValueError:
        return escape(text)


def _job_row(job: dict[str, Any]) -> str:
    last = job["last_run"]
    outcome = last["outcome"] if last else "never"
    took = f"{last['seconds']:.1f} s" if last else ""
    error = job["last_error"]
    error_html = ""
    if error:
        more = f" (+{job['error_count'] - 1} more)" if job["error_count"] > 1 else ""
        error_html = f"<b>{escape(error['name'])}</b>: {escape(error['reason'])}{more}" + (
            f'<br><code class="muted">{escape(error["url"])}</code>' if error["url"] else ""
        )
    return (
        f'<tr class="row-{outcome}" data-job="{escape(job["job"])}">'
        f"<td><b>{escape(job['job'])}</b></td><td><code>{escape(job['schedule'])}</code></td>"
        f"<td>{_when(last['start'] if last else None)}"
        f"{' (' + escape(last['trigger']) + ')' if last else ''}</td>"
        f'<td class="{outcome}">{outcome}</td>'
        f"<td>{took}</td>"
        f"<td>{_when(job['next_run'])}</td><td>{error_html}</td>"
        f"<td><button onclick=\"syncNow('{escape(job['job'])}')\">Sync now</button></td></tr>"
    )


def _verification(doc: dict[str, Any] | None) -> str:
    if not doc:
        return '<p class="muted">never run: <code>tfmirror verify</code></p>'
    state = "ok" if doc["outcome"] == "ok" else "failed"
    lines = [
        f'<p id="verification">last run {_when(doc["end"])}: <span class="{state}">'
        f"{escape(doc['outcome'])}</span>; {doc['blobs_checked']} blobs "
        f"({_size(doc['bytes_checked'])}) re-hashed</p><ul>"
    ]
    for target in doc.get("targets", []):
        mark = "ok" if target["ok"] else "failed"
        lines.append(
            f"<li>target <code>{escape(target['target'])}</code>: "
            f'<span class="{mark}">{"ok" if target["ok"] else "FAILED"}</span> '
            f"({escape(target['how'])}) {escape(target['detail'])}</li>"
        )
    for model in doc.get("models", []):
        mark = "ok" if model["ok"] else "failed"
        lines.append(
            f'<li>model {escape(model["handle"])}: <span class="{mark}">'
            f"{'loads' if model['ok'] else 'FLAGGED'}</span> "
            f"{escape(model['detail'])}</li>"
        )
    lines += [f'<li class="failed">{escape(p)}</li>' for p in doc.get("problems", [])]
    return "".join(lines) + "</ul>"


def _lag_state(row: dict[str, Any]) -> str:
    if row["behind"]:
        return '<span class="failed">behind</span>'
    if not row["newest_upstream"] or not row["mirrored"]:
        return '<span class="muted">not known yet</span>'
    return '<span class="ok">up to date</span>'


def render_page(status: dict[str, Any]) -> str:
    failing = escape(", ".join(status["failing_jobs"]))
    badge = (
        '<span class="badge ok">all jobs ok</span>'
        if status["healthy"]
        else f'<span class="badge failed">failing: {failing}</span>'
    )
    jobs = "".join(_job_row(j) for j in status["jobs"])
    inventory = status["inventory"]
    targets = (
        "".join(
            f"<tr><td><code>{escape(t['target'])}</code></td><td>{t['projects']}</td>"
            f"<td>{t['files']}</td><td>{_size(t['bytes'])}</td><td>{_when(t['synced_at'])}</td></tr>"
            for t in inventory["targets"]
        )
        or '<tr><td colspan="5" class="muted">nothing mirrored yet</td></tr>'
    )
    models = (
        "".join(
            f'<tr><td><a href="/hub/{escape(m["path"])}">{escape(m["handle"])}</a></td>'
            f"<td>{_size(m['size'])}</td><td><code>{m['sha256'][:16]}…</code></td>"
            f"<td>{_when(m['synced_at'])}</td></tr>"
            for m in inventory["models"]
        )
        or '<tr><td colspan="4" class="muted">no models</td></tr>'
    )
    lag = "".join(
        f"<tr><td><code>{escape(r['requirement'])}</code></td>"
        f"<td>{escape(', '.join(r['mirrored']) or '-')}</td>"
        f"<td>{escape(r['newest_upstream'] or 'unknown')}</td><td>{_lag_state(r)}</td></tr>"
        for r in status["lag"]
    )
    verify = _verification(status["verification"])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tfmirror status</title>
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<style>{STYLE}</style><script>{SCRIPT}</script></head><body>
<h1>tfmirror {badge}</h1>
<p id="message" class="muted"></p>
<h2>Jobs</h2>
<table id="jobs"><tr><th>job</th><th>schedule</th><th>last run</th><th>outcome</th>
<th>duration</th><th>next run</th><th>last error</th><th></th></tr>{jobs}</table>
<h2>PyPI targets</h2>
<table><tr><th>target</th><th>projects</th><th>files</th><th>size</th><th>synced</th></tr>
{targets}</table>
<h2>Lag</h2>
<table><tr><th>requirement</th><th>mirrored</th><th>newest upstream</th><th></th></tr>{lag}</table>
<h2>TF Hub models</h2>
<table><tr><th>handle</th><th>size</th><th>sha256</th><th>synced</th></tr>{models}</table>
<h2>Verification</h2>{verify}
<p class="muted">pip index: <code>{escape(status["devpi_index"])}</code> &middot;
store: <code>{escape(status["store"])}</code> &middot; generated {_when(status["generated_at"])},
reloads every {REFRESH_SECONDS} s &middot; <a href="/api/status">JSON</a> &middot;
<a href="/metrics">metrics</a></p>
</body></html>
"""


def render_text(status: dict[str, Any]) -> str:
    """`tfmirror status`: the page's facts as plain text."""
    failing = ", ".join(status["failing_jobs"])
    lines = ["tfmirror: " + ("all jobs ok" if status["healthy"] else f"FAILING: {failing}")]
    for job in status["jobs"]:
        last = job["last_run"]
        line = f"  {job['job']:6} {job['schedule']:16} "
        line += (
            f"last {last['outcome']} at {_plain(last['start'])} ({last['seconds']:.1f} s)"
            if last
            else "never run"
        )
        lines.append(line + (f", next {_plain(job['next_run'])}" if job["next_run"] else ""))
        if job["last_error"]:
            lines.append(
                f"         error: {job['last_error']['name']}: {job['last_error']['reason']}"
            )
    for target in status["inventory"]["targets"]:
        lines.append(
            f"  target {target['target']}: {target['files']} files, "
            f"{_size(target['bytes'])}, synced {target['synced_at']}"
        )
    for model in status["inventory"]["models"]:
        lines.append(f"  model {model['handle']}: {_size(model['size'])} {model['sha256'][:12]}")
    for row in status["lag"]:
        state = "behind" if row["behind"] else "up to date"
        lines.append(
            f"  lag {row['requirement']}: mirrored {', '.join(row['mirrored']) or '-'}, "
            f"upstream {row['newest_upstream'] or '?'} ({state})"
        )
    verification = status["verification"]
    lines.append(
        f"  verify: {verification['outcome']} at {verification['end']}"
        if verification
        else "  verify: never run"
    )
    return "\n".join(lines) + "\n"


def _plain(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
