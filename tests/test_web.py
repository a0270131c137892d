"""The web page over HTTP: aiohttp's client against the real app (the scripted agent is a real
subprocess). Login on every page, stream and action; CSRF; output as text; the event stream;
Stop and Extend; files sent with a prompt; the login rate limit; refusing to open beyond
loopback without a password."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from html import escape
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import aiohttp
import pytest
from cadenza.api import ConfigError, hookimpl
from cadenza.testing import ManualClock
from conftest import CHAT, StartApp

PASSWORD = "correct horse battery staple"
PASSWORD_ENV = "CADENZA_TEST_WEB_PASSWORD"
PAGES = ("/", "/chats", "/runs", "/plugins", "/events", "/snapshot")
ACTIONS = ("/send", "/stop", "/extend")


def web_config(extra: str = "", web: str = "", plugins: str = "") -> str:
    """plugins.toml with the page on a free port of 127.0.0.1, logging in with ``PASSWORD``."""
    return (f'[plugins]\nweb = true\n{plugins}\n[web]\nport = 0\n'
            f'password_env = "{PASSWORD_ENV}"\n{web}\n{extra}')


def files_config(extra: str = "") -> str:
    """web_config with the files plugin on (the kit runs without it)."""
    return web_config(extra, plugins="files = true")


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


class Page:
    """One browser-like client of the page: its cookies, and the CSRF token once logged in."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.csrf = ""

    async def login(self, password: str = PASSWORD) -> aiohttp.ClientResponse:
        response = await self.session.post(f"{self.url}/login", data={"password": password})
        if response.status == 200 and str(response.url).endswith("/"):
            found = re.search(r'<meta name="csrf" content="([^"]+)"', await response.text())
            assert found, "the page after login carries its CSRF token"
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, csrf: str | None = "", files: Mapping[str, bytes] = {},
                   **form: str) -> aiohttp.ClientResponse:
        """An action as the page's script sends it (``csrf=None``: without the token); with
        ``files`` (name → content), multipart as the send form's file input."""
        headers = {"X-CSRF-Token": self.csrf if csrf == "" else csrf} if csrf is not None else {}
        data: Any = form
        if files:
            data = aiohttp.FormData(form)
            for name, content in files.items():
                data.add_field("files", content, filename=name,
                               content_type="application/octet-stream")
        return await self.session.post(f"{self.url}{path}", data=data, headers=headers,
                                       allow_redirects=False)

    async def get(self, path: str) -> aiohttp.ClientResponse:
        return await self.session.get(f"{self.url}{path}", allow_redirects=False)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The server-sent events, one JSON message each."""
        async with self.session.get(f"{self.url}/events") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for line in response.content:
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])


@pytest.fixture
async def page_for() -> AsyncIterator[Callable[[str], Page]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(url: str) -> Page:
        # the page is on an IP address: aiohttp keeps its cookies only when told it may
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(session)
        return Page(url, session)

    yield make
    for session in sessions:
        await session.close()


async def until(stream: AsyncIterator[dict[str, Any]], matches: Callable[[dict[str, Any]], Any],
                timeout: float = 20.0) -> dict[str, Any]:
    """The first message of ``stream`` that ``matches``, within ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        async for message in stream:
            if matches(message):
                return message
    raise AssertionError("the event stream ended")


async def logged_in(start_app: StartApp, page_for: Callable[[str], Page], toml: str = "",
                    **start: Any) -> tuple[Any, Page]:
    h = await start_app(toml or web_config(), **start)
    page = page_for(h.plugin("web").url)
    assert (await page.login()).status == 200
    return h, page


async def test_every_page_stream_and_action_needs_a_login(start_app, page_for):
    h = await start_app(web_config())
    page = page_for(h.plugin("web").url)
    for path in PAGES:
        response = await page.get(path)
        assert response.status == 401, path
        assert 'http-equiv="refresh" content="0;url=/login"' in await response.text()
    for path in ACTIONS:
        assert (await page.post(path, csrf=None, prompt="say hi", turn="x")).status == 401
    login = await page.get("/login")
    assert login.status == 200 and 'name="password"' in await login.text()
    assert not h.recorder.events


async def test_login_cookie_is_httponly_and_samesite_strict(start_app, page_for):
    h = await start_app(web_config())
    page = page_for(h.plugin("web").url)
    response = await page.session.post(f"{page.url}/login", data={"password": PASSWORD},
                                       allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
    assert (await page.get("/")).status == 200
    logout = await page.session.post(f"{page.url}/logout", allow_redirects=False)
    assert logout.status == 403  # logging out is an action too: it needs the token


async def test_an_action_without_the_csrf_token_is_refused(start_app, page_for):
    h, page = await logged_in(start_app, page_for)
    assert (await page.post("/send", csrf=None, prompt="say not sent")).status == 403
    assert (await page.post("/send", csrf="forged", prompt="say not sent")).status == 403
    assert (await page.post("/send", prompt="say sent")).status == 200
    [done] = await h.recorder.finished(1)
    assert done.turn.prompt == "say sent" and done.turn.chat.key == "web:operator"


async def test_a_turn_streams_to_the_page_by_server_sent_events(start_app, page_for):
    _, page = await logged_in(start_app, page_for)
    stream = page.events()
    snapshot = await until(stream, lambda m: m["type"] == "snapshot")
    assert snapshot["running"] == []
    assert (await page.post("/send", prompt="say hello from the page")).status == 200
    started = await until(stream, lambda m: m["type"] == "turn")
    assert started["chat"] == "web:operator" and started["deadline_in"] > 0
    text = await until(stream, lambda m: m["type"] == "text")
    assert text["id"] == started["id"] and "hello from the page" in text["text"]
    end = await until(stream, lambda m: m["type"] == "end")
    assert end["outcome"] == "completed" and "hello from the page" in end["text"]
    await stream.aclose()


async def test_turns_of_other_chats_show_live(start_app, page_for):
    h, page = await logged_in(start_app, page_for)
    stream = page.events()
    await until(stream, lambda m: m["type"] == "snapshot")
    await h.say("tick 3 0.05 from elsewhere")
    started = await until(stream, lambda m: m["type"] == "turn")
    assert started["chat"] == CHAT.key
    await until(stream, lambda m: m["type"] == "end")
    await stream.aclose()
    chats = await (await page.get("/chats")).text()
    assert CHAT.key in chats and "tick 3 0.05 from elsewhere" in chats


async def test_the_chats_view_lists_the_journals_turns_after_a_restart(start_app, page_for):
    h, page = await logged_in(start_app, page_for)
    hostile = 'say <script>alert("pwned")</script><img src=x onerror=alert(1)>'
    await h.say("say before the restart")
    await h.say(hostile)
    await h.recorder.finished(2)
    h = await h.restart()
    page = page_for(h.plugin("web").url)
    assert (await page.login()).status == 200
    html = await (await page.get("/chats")).text()
    section = html[html.index(f"<h2>{CHAT.key}</h2>"):]
    rows = re.findall(r"<tr>(<td.*?)</tr>", section[:section.index("Named sessions")])
    cells = [re.findall(r'data-label="(\w+)">(.*?)</td>', row) for row in rows]
    assert [dict(row) for row in cells] == [
        {"prompt": escape(hostile), "session": "—", "outcome": "completed", "duration": ANY,
         "cost_usd": "0.0123"},
        {"prompt": "say before the restart", "session": "—", "outcome": "completed",
         "duration": ANY, "cost_usd": "0.0123"}]
    assert "<script>alert" not in html and "<img src=x" not in html


async def test_without_the_journal_the_chats_view_lists_this_runs_turns(start_app, page_for):
    h, page = await logged_in(start_app, page_for, web_config(plugins="journal = false"))
    await h.say("say only in this run")
    await h.recorder.finished(1)
    html = await (await page.get("/chats")).text()
    assert CHAT.key in html and "say only in this run" in html and "0.0123" in html


async def test_hostile_output_is_text_on_the_page(start_app, page_for):
    h, page = await logged_in(start_app, page_for)
    await h.say('say <script>alert("pwned")</script><img src=x onerror=alert(1)>')
    await h.recorder.finished(1)
    response = await page.get("/")
    html = await response.text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_stop_on_the_page_ends_the_turn(start_app, page_for):
    h, page = await logged_in(start_app, page_for)
    stream = page.events()
    await until(stream, lambda m: m["type"] == "snapshot")
    await h.say("sleep 30")
    started = await until(stream, lambda m: m["type"] == "turn")
    chats = await (await page.get("/chats")).text()
    assert '<td data-label="outcome">running</td>' in chats  # the journal's row, live
    assert (await page.post("/stop", csrf=None, turn=started["id"])).status == 403
    assert (await page.post("/stop", turn=started["id"])).status == 200
    end = await until(stream, lambda m: m["type"] == "end")
    assert end["outcome"] == "cancelled" and "web page" in end["outcome_text"]
    [done] = await h.recorder.finished(1)
    assert done.kind == "cancelled"  # the chat that ran it is told
    assert (await page.post("/stop", turn=started["id"])).status == 409


async def test_extend_reaches_the_timeout_controller(start_app, page_for):
    h, page = await logged_in(start_app, page_for, web_config(
        "[timeout]\nseconds = 30\nwarn_before = [10]\nextend_by = 60\nmax_seconds = 300\n"))
    stream = page.events()
    await until(stream, lambda m: m["type"] == "snapshot")
    await h.say("sleep 30")
    started = await until(stream, lambda m: m["type"] == "turn")
    assert started["limit"] == pytest.approx(30, abs=1)
    assert (await page.post("/extend", turn=started["id"])).status == 200
    extended = await until(stream, lambda m: m["type"] == "deadline")
    assert extended["extensions"] == 1 and extended["limit"] == pytest.approx(90, abs=2)
    assert (await page.post("/stop", turn=started["id"])).status == 200
    await h.recorder.finished(1)


async def test_failed_logins_are_rate_limited(start_app, page_for):
    clock = ManualClock()
    h = await start_app(web_config(web="login_attempts = 3\nlogin_window = 60"), clock=clock)
    page = page_for(h.plugin("web").url)
    for _ in range(3):
        assert (await page.login("wrong")).status == 401
    refused = await page.login()  # even the right password waits now
    assert refused.status == 429 and int(refused.headers["Retry-After"]) == 60
    await clock.advance(61)
    assert (await page.login()).status == 200


async def test_without_password_a_token_is_printed_once_and_logs_in(start_app, page_for,
                                                                    capfd, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    h = await start_app("[plugins]\nweb = true\n\n[web]\nport = 0\n")
    printed = capfd.readouterr().err
    found = re.search(r"log in at (\S+) with the token (\S+)", printed)
    assert found and found.group(1) == h.plugin("web").url
    page = page_for(found.group(1))
    assert (await page.login("not the token")).status == 401
    assert (await page.login(found.group(2))).status == 200
    assert h.plugin("web").token is None  # only its hash is kept


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
async def test_another_interface_without_a_password_refuses_to_start(start_app, monkeypatch,
                                                                      host):
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(ConfigError, match=r"\[web\] host: .*set password_env"):
        await start_app(f'[plugins]\nweb = true\n\n[web]\nhost = "{host}"\nport = 0\n')


def test_cadenza_run_exits_2_on_an_open_host_without_password(run_cli, tmp_path):
    config = tmp_path / "plugins.toml"
    config.write_text('[plugins]\nconsole = false\nweb = true\n\n[web]\nhost = "0.0.0.0"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "plugins.toml:6: [web] host:" in result.stderr and "password_env" in result.stderr


def test_the_shipped_web_table_is_the_defaults():
    from cadenza.config import Config
    from cadenza.frontends.web.settings import WebSettings
    from conftest import ROOT

    config = Config.load(ROOT / "plugins.toml")
    assert config.settings("web").load(WebSettings) == WebSettings()
    assert config.switches()["web"] is False  # off by default


def test_doctor_says_where_the_page_is_and_how_to_log_in(run_cli, tmp_path):
    config = tmp_path / "plugins.toml"
    config.write_text('[plugins]\nweb = true\n\n[web]\nport = 8999\n'
                      f'password_env = "{PASSWORD_ENV}"\n')
    done = run_cli("doctor", "--config", str(config))
    assert (f"web: the page will be at http://127.0.0.1:8999/, logging in with the password in "
            f"${PASSWORD_ENV}") in done.stdout


async def test_on_loopback_a_request_naming_another_host_is_refused(start_app, page_for):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: it gets nothing."""
    h = await start_app(web_config())
    page = page_for(h.plugin("web").url)
    port = page.url.rsplit(":", 1)[1]
    for path in ("/login", "/static/app.js", "/"):
        response = await page.session.get(f"{page.url}{path}",
                                          headers={"Host": f"evil.example:{port}"})
        assert response.status == 421, path
    assert (await page.get("/login")).status == 200
    local = await page.session.get(f"{page.url}/login", headers={"Host": f"localhost:{port}"})
    assert local.status == 200


class Failing:
    @hookimpl
    def on_stream_event(self, event):
        raise RuntimeError("boom from a plugin")


async def test_the_plugins_view_says_which_plugin_was_switched_off_and_why(start_app,
                                                                            page_for):
    h, page = await logged_in(start_app, page_for, web_config("[core]\nmax_failures = 1\n"),
                              failing=Failing())
    await h.say("say hi")
    await h.recorder.finished(1)
    html = await (await page.get("/plugins")).text()
    row = re.search(r"<tr><td[^>]*>failing</td>.*?</tr>", html)
    assert row and "switched off" in row.group(0) and "boom from a plugin" in row.group(0)


def inbox_files(h: Any) -> list[Path]:
    inbox = h.bot.workdir / ".cadenza-inbox"
    return sorted(p for p in inbox.rglob("*") if p.is_file()) if inbox.exists() else []


async def test_files_sent_with_a_prompt_are_saved_and_named_in_its_turn(start_app, page_for):
    h, page = await logged_in(start_app, page_for, files_config())
    sent = await page.post("/send", prompt="say read them",
                           files={"notes.txt": b"first notes", "trace.log": b"boom"})
    assert sent.status == 200 and (await sent.json())["ok"]
    [done] = await h.recorder.finished(1)
    turn = done.turn
    folder = f".cadenza-inbox/{turn.id}"
    assert turn.chat.key == "web:operator" and turn.user_id == "operator"
    assert turn.prompt == (
        f"The user attached `notes.txt` (application/octet-stream, 11 bytes) at "
        f"{folder}/notes.txt.\n"
        f"The user attached `trace.log` (application/octet-stream, 4 bytes) at "
        f"{folder}/trace.log.\n\n"
        "say read them")
    assert (h.bot.workdir / folder / "notes.txt").read_bytes() == b"first notes"
    assert [p.name for p in inbox_files(h)] == ["notes.txt", "trace.log"]


async def test_an_upload_needs_the_login_and_the_csrf_token(start_app, page_for):
    h = await start_app(files_config())
    page = page_for(h.plugin("web").url)
    upload = {"notes.txt": b"not taken"}
    assert (await page.post("/send", csrf=None, files=upload, prompt="say no")).status == 401
    assert (await page.login()).status == 200
    assert (await page.post("/send", csrf=None, files=upload, prompt="say no")).status == 403
    assert (await page.post("/send", csrf="forged", files=upload, prompt="say no")).status == 403
    assert inbox_files(h) == [] and not h.recorder.events


async def test_an_oversized_upload_is_refused_with_nothing_written(start_app, page_for):
    h, page = await logged_in(start_app, page_for, files_config(
        "[files]\nmax_bytes = 1000\nmax_turn_bytes = 1500\n"))
    # over the request limit (the files of a message, plus 1 MB of form): not read further
    huge = await page.post("/send", files={"huge.bin": b"x" * (1500 + 1024 * 1024)},
                           prompt="say too much")
    assert huge.status == 413
    message = (await huge.json())["message"]
    assert "1.5 KB together" in message and "Nothing was sent" in message
    # within the request, over the files plugin's limits: refused before anything is written
    assert (await page.post("/send", files={"big.bin": b"x" * 1001},
                            prompt="say look")).status == 200
    [refusal] = await h.recorder.wait_for(lambda: [n for n in h.recorder.notices
                                                    if n.kind == "error"])
    assert refusal.chat.key == "web:operator"
    assert "big.bin is 1001 bytes, over the limit of 1000 bytes per file" in refusal.text
    assert inbox_files(h) == [] and not h.recorder.events


async def test_files_sent_to_the_page_chat_show_as_their_names(start_app, page_for):
    h, page = await logged_in(start_app, page_for, files_config())
    stream = page.events()
    await until(stream, lambda m: m["type"] == "snapshot")
    (h.bot.workdir / "report.txt").write_text("the report")
    assert (await page.post("/send", prompt="/get report.txt")).status == 200
    notice = await until(stream, lambda m: m["type"] == "notice" and m["kind"] == "files")
    assert notice["files"] == ["report.txt"]
    await stream.aclose()
    html = await (await page.get("/")).text()
    assert '<li class="files"><span class="file">report.txt</span></li>' in html
