"""The page's HTML, rendered on the server. Every value goes through ``escape``: agent output,
prompts and plugin rows are text, never markup. The script (static/app.js) takes over the live
parts from the event stream and inserts what it receives with ``textContent`` only."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

NAV = (("/", "Now"), ("/chats", "Chats"), ("/runs", "Runs"), ("/plugins", "Plugins"))


def layout(title: str, body: str, *, path: str = "", csrf: str = "") -> str:
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if href == path else ""}>{label}</a>'
        for href, label in NAV) if csrf else ""
    logout = (f'<form method="post" action="/logout" class="logout">'
              f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
              f'<button>Log out</button></form>') if csrf else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{escape(csrf)}">
<title>{escape(title)} · Cadenza</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head><body>
<header><strong>Cadenza</strong><nav>{nav}</nav>{logout}</header>
<main>{body}</main>
</body></html>"""


def login_page(message: str = "") -> str:
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return layout("Log in", f"""<h1>Log in</h1>{note}
<form method="post" action="/login" class="login">
<label>Password or start token <input type="password" name="password" autofocus
 autocomplete="current-password" required></label>
<button>Log in</button></form>""")


def go_to_login() -> str:
    """A 401's body: the browser goes on to the login page."""
    return ('<!doctype html><meta http-equiv="refresh" content="0;url=/login">'
            '<p>Log in first: <a href="/login">/login</a></p>')


def now_page(csrf: str, snapshot: Mapping[str, Any], chat: str) -> str:
    running = "".join(turn_card(turn, csrf) for turn in snapshot["running"])
    finished = "".join(turn_card(turn, csrf) for turn in snapshot["finished"])
    notices = "".join(notice_item(n) for n in reversed(snapshot["notices"]))
    body = f"""<h1>Now</h1>
<section id="running" aria-live="polite">{running}</section>
<p id="idle" class="muted"{" hidden" if running else ""}>Nothing is running.</p>
<h2>Your chat <small class="muted">{escape(chat)}</small></h2>
<form method="post" action="/send" id="send" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<textarea name="prompt" rows="3" placeholder="A prompt for the agent, or /help"></textarea>
<div class="send-row"><label>Files <input type="file" name="files" multiple></label>
<button>Send</button></div></form>
<ul id="notices" class="notices">{notices}</ul>
<h2>Finished in this run</h2>
<section id="finished">{finished}</section>"""
    return layout("Now", body, path="/", csrf=csrf)


def turn_card(turn: Mapping[str, Any], csrf: str) -> str:
    """One turn, running or finished; app.js builds the same structure for new ones."""
    running = not turn["outcome"]
    session = f' <span class="session">@{escape(turn["session"])}</span>' if turn["session"] else ""
    controls = f'<div class="controls">{_action("stop", "Stop", turn, csrf)}' \
        f'{_action("extend", "Extend", turn, csrf)}</div>' if running else ""
    outcome = "" if running else f'{escape(turn["outcome"])}' + (
        f': {escape(turn["outcome_text"])}' if turn["outcome_text"] else "")
    return f"""<article class="turn{"" if running else " ended " + escape(turn["outcome"])}"
 data-turn="{escape(turn["id"])}" data-elapsed="{turn["elapsed"]:.1f}"
 data-deadline-in="{_number(turn["deadline_in"])}" data-limit="{_number(turn["limit"])}">
<div class="head"><span class="chat">{escape(turn["chat"])}</span>{session}
<span class="agent">{escape(turn["agent"])}</span>
<span class="elapsed">{_seconds(turn["elapsed"])}</span></div>
<p class="prompt">{escape(turn["prompt"])}</p>
<div class="deadline{" warned" if turn["warning"] else ""}"><div class="bar"></div>
<span class="deadline-text">{escape(turn["warning"])}</span></div>
<p class="activity">{escape(turn["activity"])}</p>
<pre class="answer">{escape(turn["text"])}</pre>
<p class="outcome">{outcome}</p>{controls}
</article>"""


def _action(action: str, label: str, turn: Mapping[str, Any], csrf: str) -> str:
    return (f'<form method="post" action="/{action}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<input type="hidden" name="turn" value="{escape(turn["id"])}">'
            f'<button class="{action}">{label}</button></form>')


def notice_item(notice: Mapping[str, Any]) -> str:
    """A notice; files sent with it as their names (its text too, unless it is one)."""
    names = notice.get("files", [])
    text = "" if notice["text"] in names else escape(notice["text"])
    files = "".join(f'<span class="file">{escape(name)}</span>' for name in names)
    return f'<li class="{escape(notice["kind"])}">{text}{files}</li>'


def chats_page(csrf: str, chats: Mapping[str, Mapping[str, Any]]) -> str:
    if not chats:
        return layout("Chats", "<h1>Chats</h1><p class=muted>No chat has run a turn yet.</p>",
                      path="/chats", csrf=csrf)
    parts = ["<h1>Chats</h1>"]
    for chat, about in chats.items():
        parts.append(f'<section class="chat"><h2>{escape(chat)}</h2>'
                     f'<p>Queue: {escape(str(about["waiting"]))} waiting</p>'
                     f'<h3>Recent turns</h3>{table(about["turns"])}'
                     f'<h3>Named sessions</h3>{table(about["sessions"])}</section>')
    return layout("Chats", "".join(parts), path="/chats", csrf=csrf)


def runs_page(csrf: str, status: Mapping[str, Any]) -> str:
    if "runs" not in status:
        body = "<h1>Runs</h1><p class=muted>The journal plugin is off: no runs are recorded.</p>"
    else:
        counts = ", ".join(f"{escape(str(k))}: {escape(str(v))}"
                           for k, v in status.get("turns", {}).items()) or "none"
        body = (f'<h1>Runs</h1><h2>Lifecycle</h2><div id="runs">{table(status["runs"])}</div>'
                f"<p>Turns by state: {counts}</p>"
                f'<h2>Unfinished and abandoned turns</h2>{table(status["unfinished_turns"])}'
                f'<h2>Resumed turns</h2>{table(status["resumed_turns"])}')
    return layout("Runs", body, path="/runs", csrf=csrf)


def plugins_page(csrf: str, plugins: Sequence[Mapping[str, Any]]) -> str:
    return layout("Plugins", f"<h1>Plugins</h1>{table(plugins)}", path="/plugins", csrf=csrf)


def table(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return '<p class="muted">None.</p>'
    columns = list(rows[0])
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td data-label="{escape(str(c))}">{escape(_cell(row.get(c)))}</td>'
                         for c in columns) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _seconds(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0)))
