"""A screenshot from the chat reaches the real agent CLI as a path it can read (issue 19).

Real aiogram against the fake Bot API, the files plugin on, and the pinned
Claude Code or Codex CLI against the fake model API, contained and offline as
``real_agent_chats`` describes. A user sends a PNG screenshot as a file (Telegram keeps a
document's bytes and name; a photo would be recompressed to JPEG) with a caption: the plugin
saves it in ``.cadenza-inbox/<turn>/`` and the prompt the model gets names that path. With
Claude Code, the user then asks for it, the fake model calls the Read tool on that path, and
the CLI's next request carries the screenshot as an image block.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import test_real_agents_telegram

pytest.register_assert_rewrite("real_agent_chats")
pytest_plugins = ["real_agent_chats"]  # its fixtures: binaries, model

from cadenza.plugins.files import INBOX, PREAMBLE  # noqa: E402
from real_agent_chats import DONE, ContainedAgent, assert_offline, contain  # noqa: E402
from test_real_agents import AGENTS, ModelAPI  # noqa: E402
from test_real_agents_telegram import TELEGRAM, USER  # noqa: E402

from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer  # noqa: E402

pytestmark = pytest.mark.agent_cli
telegram = test_real_agents_telegram.telegram

NAME = "screenshot.png"
CAPTION = "The login page looks broken, see the screenshot."


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one red colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\x00" + b"\xc8\x1e\x1e" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


SCREENSHOT = png(4, 3)


@dataclass(frozen=True)
class Sent:
    """A screenshot's first turn, ended: where the plugin saved it and the harness."""

    contained: ContainedAgent
    h: Any
    saved: Path  # relative to the working directory


async def send_screenshot(agent: str, binaries: dict[str, Path], model: ModelAPI,
                          telegram: FakeTelegramServer, start_app: Any, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Start Cadenza with ``agent`` behind Telegram, send SCREENSHOT as a document with
    CAPTION, and wait for its turn to end."""
    contained = contain(agent, binaries, model, tmp_path, monkeypatch,
                        ("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN))
    settings = {"api_base": f'"{telegram.base_url}"', "allowed_users": f"[{USER}]", **TELEGRAM}
    toml = contained.plugins_toml("telegram", settings)  # the kit switches files off
    h = await start_app(toml.replace("telegram = true", "telegram = true\nfiles = true"))

    telegram.push_document(USER, USER, NAME, SCREENSHOT, caption=CAPTION, mime_type="image/png")
    (end,) = await h.recorder.finished(1, timeout=30)
    assert end.kind == "completed", end
    return Sent(contained, h, Path(INBOX, end.turn.id, NAME))


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_screenshot_reaches_the_agents_prompt_as_the_path_it_was_saved_at(
        agent: str, binaries: dict[str, Path], model: ModelAPI,
        telegram: FakeTelegramServer, start_app: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent = await send_screenshot(agent, binaries, model, telegram, start_app, tmp_path,
                                 monkeypatch)

    assert (sent.contained.project / sent.saved).read_bytes() == SCREENSHOT
    line = f"The user attached `{NAME}` (4×3 PNG image, {len(SCREENSHOT)} bytes) at {sent.saved}."
    prompt = f"{PREAMBLE}\n\n{line}\n\n{CAPTION}"
    assert prompt in model.prompts(), model.prompts()
    # the fake model echoes a prompt that is no script: the chat shows it came through
    await telegram.wait_for(lambda: any(DONE in text for text in telegram.texts(USER)))
    (answer,) = telegram.texts(USER)
    assert str(sent.saved) in answer and CAPTION in answer, answer
    assert_offline(model, agent)


def tool_result_images(model: ModelAPI) -> list[dict[str, Any]]:
    """Every image block inside a tool result the Claude CLI sent the fake model."""
    return [part
            for request in model.requests("/v1/messages")
            for message in request.body.get("messages", [])
            if isinstance(message.get("content"), list)
            for block in message["content"] if block.get("type") == "tool_result"
            if isinstance(block.get("content"), list)
            for part in block["content"] if part.get("type") == "image"]


async def test_claude_codes_read_tool_gives_the_model_the_saved_screenshot_as_an_image(
        binaries: dict[str, Path], model: ModelAPI, telegram: FakeTelegramServer,
        start_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = await send_screenshot("claude", binaries, model, telegram, start_app, tmp_path,
                                 monkeypatch)
    assert tool_result_images(model) == []

    # the user's next prompt is the fake model's script: Read the path the prompt named
    telegram.push_text(USER, USER, f"read {sent.contained.project / sent.saved}; say seen")
    _, second = await sent.h.recorder.finished(2, timeout=30)
    assert second.kind == "completed", second

    (image,) = tool_result_images(model)
    assert image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"], validate=True) == SCREENSHOT
    await telegram.wait_for(lambda: any(text.startswith(f"seen\n\n{DONE}")
                                        for text in telegram.texts(USER)))
    assert_offline(model, "claude")

