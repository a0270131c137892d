"""Agent Markdown as Telegram HTML, escaped so that any text makes valid markup.

Agents write Markdown. Fenced code blocks become ``<pre>`` (with their language), inline code
``<code>``, ``**bold**``, ``*italic*``/``_italic_``, ``~~strike~~``, headings and
``[links](https://...)`` their HTML counterparts; everything else is escaped and shown as
written. Links are http(s) only (``[x](tg:...)``, ``javascript:`` and the like stay plain
text), and a link whose label names another host than its target shows the real host.
Unbalanced markers stay literal text, so the HTML is always well formed; if Telegram still
refuses it, the sender falls back to the plain source.

A message may start or end inside a code block (a long answer cut in two): ``to_html`` takes
and returns the language of the block open at the boundary, so both halves show code.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

_OPEN = re.compile(r"^ {0,3}```\s*([^\s`]*)[^`]*$")
_CLOSE = re.compile(r"^ {0,3}```\s*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)(?:\s+#+)?\s*$")
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<code_body>.+?)(?P=ticks))"
    r"|(?P<link>\[(?P<label>[^\]\n]+)\]\((?P<url>https?://[^\s()]+)\))"
    r"|(?P<bold>\*\*(?=\S)(?P<bold_body>.+?)(?<=\S)\*\*)"
    r"|(?P<strike>~~(?=\S)(?P<strike_body>.+?)(?<=\S)~~)"
    r"|(?P<em>(?<![\w*])\*(?=[^\s*])(?P<em_body>.+?)(?<=[^\s*])\*(?![\w*]))"
    r"|(?P<em2>(?<![\w_])_(?=[^\s_])(?P<em2_body>.+?)(?<=[^\s_])_(?![\w_]))"
)


# a label that is a URL (any scheme) or starts with something like a host name: a.b, x.y.z:8080
_HOSTLIKE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://\S|(?://)?[^\s/@:]+(?:@[^\s/@:]+)?"
                       r"\.[^\s/.:]*[a-z0-9-](?:[:/?#]\S*)?$)", re.IGNORECASE)


def escape(text: str) -> str:
    """Plain text for Telegram HTML: only ``&``, ``<`` and ``>`` are special."""
    return html.escape(text, quote=False)


class TelegramHTML:
    """Telegram HTML as the live-message engine writes it (``cadenza.frontends.live``'s
    ``Markup``)."""

    def escape(self, text: str) -> str:
        return escape(text)

    def render(self, source: str, code: str | None) -> tuple[str, str | None]:
        return to_html(source, code)

    def bold(self, markup: str) -> str:
        return f"<b>{markup}</b>"

    def italic(self, markup: str) -> str:
        return f"<i>{markup}</i>"


HTML = TelegramHTML()


def to_html(source: str, code: str | None = None) -> tuple[str, str | None]:
    """``source`` as Telegram HTML. ``code`` is the language ("" for none) of a fenced block
    already open where ``source`` starts, None outside code; returns the HTML and the same
    for where ``source`` ends."""
    items: list[str] = []
    block: list[str] = []
    for line in source.split("\n"):
        if code is not None:
            if _CLOSE.match(line):
                items.extend(_pre(block, code))
                block, code = [], None
            else:
                block.append(line)
            continue
        opening = _OPEN.match(line)
        if opening:
            code = re.sub(r"[^\w#+.-]", "", opening.group(1))[:32]
            continue
        heading = _HEADING.match(line)
        items.append(f"<b>{_inline(heading.group(1), True)}</b>" if heading else _inline(line))
    if code is not None:
        items.extend(_pre(block, code))
    return "\n".join(items), code


def _pre(lines: list[str], language: str) -> list[str]:
    body = "\n".join(lines)
    if not body.strip():
        return [body] if lines else []
    if language:
        return [f'<pre><code class="language-{language}">{escape(body)}</code></pre>']
    return [f"<pre>{escape(body)}</pre>"]


def _link(label: str, url: str, source: str) -> str:
    """A link, when it is a well-formed http(s) URL (else its Markdown, as plain text). A
    label that names another host than the one the link goes to (``[bank.com](https://evil)``)
    is followed by the real host, so what the reader sees is where it leads."""
    try:
        parts = urlsplit(url)
        host = _ascii(parts.hostname)
    except ValueError:
        host = None
    if not host:
        return escape(source)
    text = f'<a href="{html.escape(url, quote=True)}">{_inline(label, True)}</a>'
    named = _named_host(label)
    if (named is not None and named != host) or parts.username is not None:
        text += f" ({escape(host)})"  # user:pass@host is a classic disguise, too
    return text


def _ascii(host: str | None) -> str | None:
    """A host as the DNS sees it: an internationalised name in its ``xn--`` form, so that a
    look-alike (Cyrillic "а" for Latin "a") shows as what it is."""
    if not host or host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host.encode("punycode").decode("ascii")


def _named_host(label: str) -> str | None:
    """The host a link label names, when it is a URL or looks like a host name."""
    label = label.strip().strip("<>`*_~").strip()
    if not _HOSTLIKE.match(label):
        return None
    if "://" not in label:
        label = "http://" + label.lstrip("/")
    try:
        return _ascii(urlsplit(label).hostname)
    except ValueError:
        return None


def _inline(text: str, nested: bool = False) -> str:
    """One line of prose. Inside bold, italic or a link (``nested``), code spans lose their
    code style: Telegram does not allow code inside other formatting."""
    out: list[str] = []
    position = 0
    for found in _INLINE.finditer(text):
        out.append(escape(text[position : found.start()]))
        position = found.end()
        if found["code"]:
            body = found["code_body"]
            if len(body) > 2 and body[0] == " " and body[-1] == " ":
                body = body[1:-1]
            out.append(escape(body) if nested else f"<code>{escape(body)}</code>")
        elif found["link"]:
            out.append(_link(found["label"], found["url"], found.group()))
        elif found["bold"]:
            out.append(f"<b>{_inline(found['bold_body'], True)}</b>")
        elif found["strike"]:
            out.append(f"<s>{_inline(found['strike_body'], True)}</s>")
        else:
            body = found["em_body"] or found["em2_body"]
            out.append(f"<i>{_inline(body, True)}</i>")
    out.append(escape(text[position:]))
    return "".join(out)
