"""The console's HTML, rendered on the server: every value from a lane goes through ``escape``.

The pages carry no script of their own (the CSP allows only ``/static/console.js``); the live
parts (the queue, the lanes, a truck's plot and status) are drawn by that script from the
JSON endpoints, and each page names what it needs in ``data-`` attributes of its body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from backend.console.audit import AuditEntry
from backend.console.auth import Session
from backend.console.desk import TruckView

_STATUS_TEXT = {"held": "held", "released": "released", "refused": "refused",
                "reweigh": "re-weigh asked", "closed": "gone", "superseded": "lane moved on"}


def truck_path(lane: str, transit_id: str) -> str:
    return f"/truck/{quote(lane, safe='')}/{quote(transit_id, safe='')}"


def _attrs(data: Mapping[str, str]) -> str:
    return "".join(f' data-{name}="{escape(value)}"' for name, value in data.items())


def layout(title: str, page: str, main: str, *, site: str, session: Session | None,
           data: Mapping[str, str] | None = None, plot: bool = False) -> bytes:  # fmt: skip
    vendor = ('<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">\n'
              '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>\n'
              if plot else "")
    header = ""
    if session is not None:
        header = f"""<header>
<h1>Officer desk <span class="muted">site {escape(site)}</span></h1>
<nav><a href="/queue">Held trucks</a><a href="/lanes">Lanes</a><a href="/audit">Audit</a></nav>
<span id="link" class="link" title="this page's connection to the console">connecting</span>
<span class="who" id="who">{escape(session.user)} <span class="tier">{escape(session.tier)}</span>
</span>
<form method="post" action="/logout"><input type="hidden" name="csrf"
value="{escape(session.csrf)}"><button type="submit">log out</button></form>
</header>"""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · officer desk</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
{vendor}<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head>
<body data-page="{escape(page)}"{_attrs(data or {})}>
{header}
<main>
{main}
</main>
</body></html>
""".encode()


def login_page(site: str, message: str = "", name: str = "") -> bytes:
    note = f'<p class="error" id="login-error">{escape(message)}</p>' if message else ""
    main = f"""<form class="login" method="post" action="/login">
<h1>Officer desk</h1><p class="muted">Site {escape(site)}: log in with your officer name.</p>
{note}
<label>Name <input name="name" autocomplete="username" value="{escape(name)}" required
autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
required></label>
<button type="submit">Log in</button></form>"""
    return layout("Log in", "login", main, site=site, session=None)


def queue_page(site: str, session: Session) -> bytes:
    main = """<section class="card wide">
<h2>Held trucks <span id="held-count" class="count">-</span></h2>
<table id="queue"><thead><tr><th>lane</th><th>truck</th><th>held for</th><th>reasons</th>
<th>weight</th><th>declared</th><th>plate read</th><th>pass</th><th>status</th></tr></thead>
<tbody></tbody></table>
<p id="empty" class="muted" hidden>No truck is waiting for an officer.</p>
</section>
<section class="card wide">
<h2>Lanes</h2>
<table id="lanes"><thead><tr><th>lane</th><th>link</th><th>mode</th><th>state</th>
<th>held</th><th>backlog</th><th>last event</th><th>problems</th></tr></thead><tbody></tbody>
</table></section>"""
    return layout("Held trucks", "queue", main, site=site, session=session,
                  data={"api": "/api/queue"})


def lanes_page(site: str, session: Session) -> bytes:
    main = """<section class="card wide">
<h2>Lanes</h2>
<table id="lanes"><thead><tr><th>lane</th><th>link</th><th>mode</th><th>state</th>
<th>held</th><th>backlog</th><th>last event</th><th>problems</th></tr></thead><tbody></tbody>
</table>
<p class="muted">Backlog: events the lane has made that the backend has not stored in order
yet (its watermark against the highest seq known, from the events and the lane's last
health report).</p></section>"""
    return layout("Lanes", "lanes", main, site=site, session=session,
                  data={"api": "/api/lanes"})


def _kg(value: float | None) -> str:
    return "-" if value is None else f"{round(value):,} kg"


def _signed_kg(value: float | None) -> str:
    return "-" if value is None else f"{round(value):+,} kg"


def _dl(rows: Iterable[tuple[str, Any]], ident: str = "") -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape('-' if v in (None, '') else str(v))}</dd>"
                    for k, v in rows)
    return f'<dl{f" id={ident!r}" if ident else ""}>{items}</dl>'


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def truck_page(site: str, session: Session, view: TruckView, *, now: float) -> bytes:
    reasons = "".join(f'<li><code class="reason">{escape(r)}</code></li>' for r in view.reasons)
    flags = "".join(f'<li><code class="flag">{escape(f)}</code></li>' for f in view.flags)
    figures = "".join(
        f'<figure><img class="snapshot" src="/evidence/{quote(view.lane, safe="")}/'
        f'{quote(ref, safe="")}" alt="snapshot {escape(ref)}"><figcaption>{escape(ref)}'
        "</figcaption></figure>" for ref in view.evidence) or '<p class="muted">no snapshot</p>'
    numbers = _dl([("measured", _kg(view.weight_kg)),
                   ("uncertainty", "-" if view.uncertainty_kg is None
                    else f"± {view.uncertainty_kg:g} kg"),
                   ("declared", _kg(view.declared_gross_kg)),
                   ("difference", _signed_kg(view.difference_kg)),
                   ("tolerance", _kg(view.tolerance_kg))], "numbers")
    rules = "".join(
        "<tr>" + "".join(f"<td>{escape(str(rule.get(k, '-')))}</td>" for k in
                         ("rule", "measured_kg", "declared_kg", "difference_kg", "tolerance_kg",
                          "ok")) + "</tr>" for rule in view.weight_rules)
    passed = view.pass_read or {}
    pass_dl = _dl([("release no", passed.get("release_no")),
                   ("enterprise", passed.get("enterprise")),
                   ("plates on pass", ", ".join(map(str, passed.get("plates") or []))),
                   ("declared gross", _kg(passed.get("declared_gross_kg"))),
                   ("tolerance", _kg(passed.get("tolerance_kg"))),
                   ("pass", "valid" if passed.get("valid") else
                    f"refused: {passed.get('reason')}" if passed else "no pass read")], "pass")
    reads = _dl([("plates read", ", ".join(view.plates_read) or "none"),
                 ("containers read", ", ".join(view.containers_read) or "none")], "reads")
    findings = "".join(
        f"<li>{escape(str(f.get('check')))}: {escape(str(f.get('code') or 'ok'))}</li>"
        for f in view.identity)
    history = "".join(_history_row(a) for a in reversed(view.actions)) + "".join(
        f"<tr><td>{escape(str(a['at']))}</td><td>lane</td><td colspan=3>{escape(a['text'])}"
        "</td></tr>" for a in view.lane_answers)
    status = _STATUS_TEXT.get(view.status, view.status)
    held_for = "" if view.held_at_s is None or not view.held else \
        f" for {_duration(now - view.held_at_s)}"
    clock = "" if view.clock_synced else " (lane clock not synced)"
    main = f"""<section class="card wide head">
<h2>Truck <span id="transit">{escape(view.transit_id)}</span> at lane
<span id="lane">{escape(view.lane)}</span>
<span id="status" class="status {escape(view.status)}">{escape(status)}</span></h2>
<p id="resolution">{escape(view.resolution)}{escape(held_for)}</p>
<p class="muted">held at {escape(view.held_at or '-')}{escape(clock)}; the lane held it
{view.holds} time(s)</p>
<ul id="reasons" class="codes">{reasons}</ul>
{f'<ul id="flags" class="codes">{flags}</ul>' if flags else ''}
<p id="detail">{escape(view.detail)}</p>
</section>
{_actions(session, view)}
<section class="card"><h2>Snapshots</h2><div id="evidence">{figures}</div></section>
<section class="card"><h2>Weight trace</h2><div id="plot"></div>
<p class="muted">the deck's readings before the hold (blue), the declared gross (orange) and
its tolerance, the indicator at standstill (green)</p></section>
<section class="card"><h2>Numbers</h2>{numbers}
<table id="rules"><thead><tr><th>rule</th><th>measured</th><th>declared</th><th>difference</th>
<th>tolerance</th><th>ok</th></tr></thead><tbody>{rules}</tbody></table></section>
<section class="card"><h2>Pass</h2>{pass_dl}</section>
<section class="card"><h2>Plate and container reads</h2>{reads}
{f'<ul id="identity">{findings}</ul>' if findings else ''}</section>
<section class="card wide"><h2>What was done</h2>
<table id="history"><thead><tr><th>when</th><th>who</th><th>action</th><th>command</th>
<th>the lane's answer</th></tr></thead><tbody>{history}</tbody></table></section>"""
    api = f"/api{truck_path(view.lane, view.transit_id)}"
    signature = f"{view.status}|{len(view.actions)}|{len(view.lane_answers)}|" \
                f"{sum(1 for a in view.actions if a['answer'] is not None)}"
    return layout(f"Truck {view.transit_id}", "truck", main, site=site, session=session,
                  data={"api": api, "shown": signature}, plot=True)


def _history_row(action: Mapping[str, Any]) -> str:
    answer = action["answer"]
    said = ("waiting" if answer is None
            else "accepted: " + str(answer.get("detail")) if answer.get("accepted")
            else f"refused ({answer.get('code')}): {answer.get('detail')}")
    what = action["action"] + (f": {action['reason']}" if action.get("reason") else "")
    return (f"<tr><td>{escape(_when(action['at']))}</td><td>{escape(action['officer'])}</td>"
            f"<td>{escape(what)}</td><td><code>{escape(action['cmd_id'])}</code></td>"
            f"<td>{escape(said)}</td></tr>")


def _actions(session: Session, view: TruckView) -> str:
    if not view.held:
        return ""
    if not session.may_act:
        return ('<section class="card wide" id="actions"><p class="muted">You may look at this '
                "truck; releasing, refusing or asking for a re-weigh needs a command-tier "
                "officer.</p></section>")
    base = truck_path(view.lane, view.transit_id)
    hidden = (f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
              f'<input type="hidden" name="hold" value="{escape(view.hold_event_id)}">')
    pending = view.pending
    wait = "" if pending is None else (
        f'<p class="pending" id="pending">{escape(pending["action"])} sent by '
        f'{escape(pending["officer"])}: waiting for the lane\'s answer</p>')
    disabled = " disabled" if pending is not None else ""
    return f"""<section class="card wide" id="actions"><h2>Decide</h2>{wait}
<div class="actions">
<form method="post" action="{base}/release">{hidden}
<button type="submit" class="release" id="release"{disabled}>Release: open the barrier</button>
</form>
<form method="post" action="{base}/refuse">{hidden}
<label>Reason for the driver <input name="reason" maxlength="200" required
placeholder="e.g. weight does not match the declaration"></label>
<button type="submit" class="refuse" id="refuse"{disabled}>Refuse: the driver backs off</button>
</form>
<form method="post" action="{base}/reweigh">{hidden}
<label>Reason (optional) <input name="reason" maxlength="200"></label>
<button type="submit" id="reweigh"{disabled}>Ask for a re-weigh</button>
</form></div></section>"""


def audit_page(site: str, session: Session, entries: list[AuditEntry]) -> bytes:
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
            _when(e.at), e.officer, e.tier, e.action, e.outcome,
            f"{e.lane} {e.transit_id}".strip(), e.cmd_id, e.reason, e.detail, e.client))
        + "</tr>" for e in entries)
    main = f"""<section class="card wide"><h2>Audit: the last {len(entries)} entries</h2>
<table id="audit"><thead><tr><th>when</th><th>who</th><th>tier</th><th>action</th>
<th>outcome</th><th>truck</th><th>command</th><th>reason</th><th>detail</th><th>from</th>
</tr></thead><tbody>{rows}</tbody></table></section>"""
    return layout("Audit", "audit", main, site=site, session=session)


def message_page(site: str, session: Session | None, title: str, message: str,
                 back: str) -> bytes:  # fmt: skip
    main = (f'<section class="card wide"><h2>{escape(title)}</h2>'
            f'<p id="message">{escape(message)}</p><p><a href="{escape(back)}">back</a></p>'
            "</section>")
    return layout(title, "message", main, site=site, session=session)


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
