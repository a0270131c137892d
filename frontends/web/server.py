"""The HTTP side: aiohttp routes for the pages, the event stream and the actions, behind the
login. Every response carries a strict Content-Security-Policy (scripts and styles only from
/static, nothing inline), so even a bug that let markup through would run no script."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from cadenza.api import Attachment
from cadenza.frontends.web import pages
from cadenza.frontends.web.access import Login, LoginLimiter, Logins, Secret, csrf_ok
from cadenza.frontends.web.board import Board
from cadenza.plugins.files_names import human_size

COOKIE = "cadenza_web"
PUBLIC = ("/login", "/static/", "/favicon.ico")  # the last: a plain 404
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FORM_BYTES = 1024**2  # what a send carries besides its files: the prompt, the token, part headers
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")  # the Host a browser on this machine sends
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# where the gate leaves the request's login (RequestKey: aiohttp 3.12+; AppKey before)
LOGIN_KEY = getattr(web, "RequestKey", web.AppKey)("login", Login)


class Desk(Protocol):
    """What the pages read and the actions do: the plugin, seen from the server."""

    board: Board
    user: str

    async def send(self, text: str, files: Sequence[Attachment] = ()) -> None: ...
    def stop(self, turn_id: str) -> bool: ...
    async def extend(self, turn_id: str) -> bool: ...
    async def chats(self) -> dict[str, dict[str, Any]]: ...
    async def status(self) -> dict[str, Any]: ...
    def plugins(self) -> list[dict[str, Any]]: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    def __init__(self, desk: Desk, secret: Secret, logins: Logins, limiter: LoginLimiter,
                 *, loopback_only: bool, upload_limit: int) -> None:
        self.desk, self.secret, self.logins, self.limiter = desk, secret, logins, limiter
        self.loopback_only = loopback_only
        self.upload_limit = upload_limit  # bytes of files one send may carry ([files])
        self.static = resources.files("cadenza.frontends.web") / "static"
        self.app = web.Application(middlewares=[self.headers, self.gate])
        self.app.add_routes([
            web.get("/login", self.login_form), web.post("/login", self.login),
            web.post("/logout", self.logout), web.get("/static/{name}", self.static_file),
            web.get("/", self.now), web.get("/chats", self.chats), web.get("/runs", self.runs),
            web.get("/plugins", self.plugins), web.get("/events", self.events),
            web.get("/snapshot", self.snapshot),
            web.post("/send", self.send), web.post("/stop", self.stop),
            web.post("/extend", self.extend),
        ])

    # --- middlewares --------------------------------------------------------------

    @web.middleware
    async def headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            for name, value in HEADERS.items():
                exc.headers.setdefault(name, value)
            raise
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """No login: 401 (its body sends a browser to /login). A POST without the login's
        CSRF token (form field or X-CSRF-Token header): 403. Served on loopback, a request
        naming another host (a DNS-rebinding page) is refused before anything: 421. Bodies
        are read only once logged in; a send (files) may be ``upload_limit`` bytes plus its
        form, read no further: 413."""
        if self.loopback_only and request.url.host not in LOCAL_NAMES:
            return web.Response(status=421, text="this page answers only as a local address")
        if request.path.startswith(PUBLIC):
            return await handler(request)
        login = self.logins.find(request.cookies.get(COOKIE))
        if login is None:
            return web.Response(status=401, text=pages.go_to_login(), content_type="text/html")
        if request.path == "/send":
            request = request.clone(client_max_size=self.upload_limit + FORM_BYTES)
        try:
            if request.method == "POST":
                sent = request.headers.get("X-CSRF-Token")
                if sent is None:
                    sent = str((await request.post()).get("csrf", ""))
                if not csrf_ok(login, sent):
                    return web.Response(status=403, text="missing or wrong CSRF token")
            request[LOGIN_KEY] = login
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _answer(request, f"Too big: the files of one message may be "
                           f"{human_size(self.upload_limit)} together ([files] "
                           "max_turn_bytes). Nothing was sent.", status=413)

    # --- login --------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        return _html(pages.login_page())

    async def login(self, request: web.Request) -> web.Response:
        address = request.remote or "?"
        wait = self.limiter.retry_after(address)
        if wait > 0:
            return _html(pages.login_page(f"Too many failed logins: try again in "
                                          f"{math.ceil(wait)} s."), status=429,
                         headers={"Retry-After": str(math.ceil(wait))})
        password = str((await request.post()).get("password", ""))
        # scrypt takes tens of milliseconds: off the event loop
        if not password or not await asyncio.to_thread(self.secret.matches, password):
            self.limiter.failed(address)
            return _html(pages.login_page("Wrong password or token."), status=401)
        self.limiter.succeeded(address)
        cookie, _ = self.logins.open(self.desk.user)
        response = _redirect("/")
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.logins.lifetime))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.logins.close(request.cookies.get(COOKIE))
        response = _redirect("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = STATIC_TYPES.get(name[name.rfind("."):]) if "." in name else None
        item = self.static / name
        if kind is None or "/" in name or not item.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=item.read_bytes(), content_type=kind,
                            headers={"Cache-Control": "max-age=300"})

    # --- pages --------------------------------------------------------------------

    async def now(self, request: web.Request) -> web.Response:
        csrf = request[LOGIN_KEY].csrf
        return _html(pages.now_page(csrf, self.desk.board.snapshot(), f"web:{self.desk.user}"))

    async def chats(self, request: web.Request) -> web.Response:
        return _html(pages.chats_page(request[LOGIN_KEY].csrf, await self.desk.chats()))

    async def runs(self, request: web.Request) -> web.Response:
        return _html(pages.runs_page(request[LOGIN_KEY].csrf, await self.desk.status()))

    async def plugins(self, request: web.Request) -> web.Response:
        return _html(pages.plugins_page(request[LOGIN_KEY].csrf, self.desk.plugins()))

    async def snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.desk.board.snapshot())

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a snapshot first, then every change, one JSON object each."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        board = self.desk.board
        queue = board.listen()
        try:
            while True:
                message = await queue.get()
                if message is None:
                    break
                lines = [message]
                while not queue.empty() and len(lines) < 200:  # write what piled up at once
                    following = queue.get_nowait()
                    if following is None:
                        break
                    lines.append(following)
                await response.write("".join(
                    f"data: {json.dumps(line, ensure_ascii=False)}\n\n"
                    for line in lines).encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            board.leave(queue)
        return response

    # --- actions ------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        """A prompt, and the files picked with it (their caption): each already read whole,
        within the limit, so its size is known before the files plugin decides."""
        form = await request.post()
        prompt = str(form.get("prompt", "")).strip()
        files = [_attachment(item) for item in form.getall("files", [])
                 if isinstance(item, web.FileField)]
        if not prompt and not files:
            return _answer(request, "Nothing to send.", status=400)
        await self.desk.send(prompt, files)
        return _answer(request, "sent")

    async def stop(self, request: web.Request) -> web.Response:
        turn_id = str((await request.post()).get("turn", ""))
        stopped = self.desk.stop(turn_id)
        return _answer(request, "stopping" if stopped else "That turn already ended.",
                       status=200 if stopped else 409)

    async def extend(self, request: web.Request) -> web.Response:
        turn_id = str((await request.post()).get("turn", ""))
        asked = await self.desk.extend(turn_id)
        return _answer(request, "asked for more time" if asked else "That turn already ended.",
                       status=200 if asked else 409)


def _attachment(upload: web.FileField) -> Attachment:
    """An uploaded file (held by aiohttp: in memory while small, else in a temporary file)
    as an attachment whose fetch writes it out once."""
    source = upload.file
    size = source.seek(0, io.SEEK_END)

    def copy(path: Path) -> None:
        with source, path.open("wb") as target:
            source.seek(0)
            shutil.copyfileobj(source, target)

    async def fetch(path: Path) -> None:
        await asyncio.to_thread(copy, path)

    return Attachment(upload.filename, size, upload.content_type or "", fetch)


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def _answer(request: web.Request, text: str, status: int = 200) -> web.Response:
    """The script gets JSON; a form sent without the script goes back to the page."""
    if request.headers.get("X-CSRF-Token") is not None:
        return web.json_response({"ok": status == 200, "message": text}, status=status)
    return _redirect("/")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})
