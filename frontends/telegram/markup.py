"""Agent Markdown as Telegram HTML, escaped so that any text makes valid markup.

Agents write Markdown. Fenced code blocks become ``<pre>`` (with their language), inline code
``<code>``, ``**bold**``, ``*italic*``/``_italic_``, ``~~strike~~``, headings and
``[links](https://...)`` their HTML counterparts; everything else is escaped and shown as
written. Unbalanced markers stay literal text, so the HTML is always well formed; if Telegram
still refuses it, the sender falls back to the plain source.

A message may start or end inside a code block (a long answer cut in two): ``to_html`` takes
and returns the language of the block open at the boundary, so both halves show code.
"""

from __future__ import annotations

import html
import re

_OPEN = re.compile(r"^ {0,3}```\s*([^\s`]*)[^`]*$")
_CLOSE = re.compile(r"^ {0,3}```\s*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)(?:\s+#+)?\s*$")
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<code_body>.+?)(?P=ticks))"
    r"|(?P<link>\[(?P<label>[^\]\n]+)\]\((?P<url>(?:https?|tg|mailto):[^\s()]+)\))"
    r"|(?P<bold>\*\*(?=\S)(?P<bold_body>.+?)(?<=\S)\*\*)"
    r"|(?P<strike>~~(?=\S)(?P<strike_body>.+?)(?<=\S)~~)"
    r"|(?P<em>(?<![\w*])\*(?=[^\s*])(?P<em_body>.+?)(?<=[^\s*])\*(?![\w*]))"
    r"|(?P<em2>(?<![\w_])_(?=[^\s_])(?P<em2_body>.+?)(?<=[^\s_])_(?![\w_]))"
)


def escape(text: str) -> str:
    """Plain text for Telegram HTML: only ``&``, ``<`` and ``>`` are special."""
    return html.escape(text, quote=False)


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
            url = html.escape(found["url"], quote=True)
            out.append(f'<a href="{url}">{_inline(found["label"], True)}</a>')
        elif found["bold"]:
            out.append(f"<b>{_inline(found['bold_body'], True)}</b>")
        elif found["strike"]:
            out.append(f"<s>{_inline(found['strike_body'], True)}</s>")
        else:
            body = found["em_body"] or found["em2_body"]
            out.append(f"<i>{_inline(body, True)}</i>")
    out.append(escape(text[position:]))
    return "".join(out)
