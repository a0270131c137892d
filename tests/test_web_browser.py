"""The web page in a real browser: Debian's chromium, driven by Playwright (pointed at the
system browser: nothing is downloaded). The app is the real one, with the scripted agent as a
real subprocess. Screenshots of the main views are kept as artifacts: in the test's tmp_path,
and also in $CADENZA_WEB_SCREENSHOTS when set (docs/web.png is one of them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cadenza.testing.agents import scripted_agent
from conftest import CHAT, StartApp, read_until, start
from test_web import PASSWORD, files_config, web_config
from test_web import password as password  # autouse: $CADENZA_TEST_WEB_PASSWORD set

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed here (apt-get install -y chromium; .ci/run "
           "installs it, so these tests run in CI)")
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]'")
expect = playwright_api.expect
WAIT = 15_000  # ms: the longest any condition below is waited for

LoggedIn = Callable[..., Awaitable[tuple[Any, Any]]]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        await browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Any, str], Awaitable[Path]]:
    async def shot(page: Any, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        keep = os.environ.get("CADENZA_WEB_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return shot


async def log_in(browser: Any, url: str) -> Any:
    page = await browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(WAIT)
    await page.goto(url)  # without a login: 401, and on to the login form
    await expect(page).to_have_url(f"{url}login")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.login button")
    await expect(page).to_have_url(url)
    return page


@pytest.fixture
def logged_in(start_app: StartApp, browser: Any) -> LoggedIn:
    async def start(toml: str = "") -> tuple[Any, Any]:
        h = await start_app(toml or web_config())
        return h, await log_in(browser, h.plugin("web").url)

    return start


def turn_card(page: Any, chat: str) -> Any:
    return page.locator("#running article", has=page.locator(".chat", has_text=chat))


async def test_a_prompt_sent_from_the_page_streams_its_answer(logged_in, shots):
    _, page = await logged_in()
    await page.fill("#send textarea", "tick 4 0.4 streamed")
    await page.click("#send button")
    card = turn_card(page, "web:operator")
    # text on the page while the turn still runs: streamed, not shown at the end
    await expect(card.locator(".answer")).to_contain_text("streamed 1")
    await expect(card).not_to_have_class("ended")
    await shots(page, "now-streaming")
    done = page.locator("#finished article.completed")
    await expect(done.locator(".answer")).to_contain_text("streamed 4")
    await expect(page.locator("#send textarea")).to_have_value("")


async def test_a_file_picked_with_a_prompt_starts_its_turn(logged_in, tmp_path):
    h, page = await logged_in(files_config())
    picked = tmp_path / "notes.txt"
    picked.write_text("what the agent should read")
    await page.fill("#send textarea", "say read the notes")
    await page.set_input_files("#send input[type=file]", str(picked))
    await page.click("#send button")
    card = page.locator("#finished article.completed")
    await expect(card.locator(".prompt")).to_contain_text("The user attached `notes.txt`")
    await expect(card.locator(".answer")).to_contain_text("read the notes")
    [done] = await h.recorder.finished(1)
    saved = h.bot.workdir / ".cadenza-inbox" / done.turn.id / "notes.txt"
    assert saved.read_text() == "what the agent should read"
    assert done.turn.prompt.endswith("\n\nsay read the notes")
    assert await page.locator("#send input[type=file]").input_value() == ""  # form reset


async def test_a_turn_of_another_chat_appears_live_and_stop_ends_it(logged_in, shots):
    h, page = await logged_in()
    await h.say("tick 1 0.1 working; sleep 30")
    card = turn_card(page, CHAT.key)
    await expect(card.locator(".answer")).to_contain_text("working 1")
    await card.locator("button.stop").click()
    await expect(page.locator("#finished article.cancelled .outcome")).to_contain_text(
        "stopped from the web page")
    [done] = await h.recorder.finished(1)
    assert done.kind == "cancelled" and done.turn.chat == CHAT  # its chat is told
    await expect(page.locator("#idle")).to_be_visible()


async def test_the_deadline_bar_shows_the_warning(logged_in, shots):
    h, page = await logged_in(web_config(
        "[timeout]\nseconds = 4\nwarn_before = [3]\nextend_by = 0\nmax_seconds = 4\n"))
    await h.say("tick 1 0.1 reading the build logs; sleep 30")
    await page.fill("#send textarea", "tick 12 0.25 step of the answer")
    await page.click("#send button")
    deadline = turn_card(page, CHAT.key).locator(".deadline")
    await expect(deadline).to_have_class("deadline warned")
    await expect(deadline).to_contain_text("left")
    await expect(turn_card(page, "web:operator").locator(".answer")).to_contain_text("answer 3")
    await shots(page, "now-deadline-warning")
    await expect(page.locator("#finished article.timed_out")).to_have_count(1)


async def test_hostile_output_stays_text(logged_in):
    h, page = await logged_in()
    hostile = ('<script>document.title="pwned"</script>'
               '<img src=x onerror="document.title=\'pwned\'">')
    await h.say(f"say {hostile}")
    await h.recorder.finished(1)
    answer = page.locator("#finished article .answer")
    await expect(answer).to_have_text(hostile)  # shown as the characters it is
    await page.reload()  # and the same rendered by the server
    await expect(answer).to_have_text(hostile)
    assert await page.locator("article script, article img").count() == 0
    assert await page.title() != "pwned"


async def test_the_runs_timeline_shows_a_crash_and_a_restart(start_app, browser, shots,
                                                             tmp_path):
    # a real `cadenza run` on the same state directory, killed with SIGKILL mid-turn
    config = tmp_path / "crashing.toml"
    config.write_text(f"[plugins]\nconsole = true\nfiles = false\n\n{scripted_agent()}")
    first = start(["run", "--config", str(config), "--state-dir", str(tmp_path / "state")],
                  {}, tmp_path)
    first.stdin.write("say before the crash; sleep 30\n")
    first.stdin.flush()
    read_until(first, "before the crash")
    first.kill()
    first.wait()
    h = await start_app(web_config())  # crashed: the journal finds the interrupted turn
    h = await h.restart()  # restarted
    page = await log_in(browser, h.plugin("web").url)
    await page.click("nav >> text=Runs")
    lifecycles = page.locator("#runs td[data-label=lifecycle]")
    await expect(lifecycles).to_have_text(["restarted", "crashed", "started"])
    await shots(page, "runs")
    await page.click("nav >> text=Plugins")
    await expect(page.locator("table")).to_contain_text("journal")
    await shots(page, "plugins")


async def test_chats_view_lists_turns_and_sessions(logged_in, shots):
    h, page = await logged_in()
    await h.say("/session docs say the changelog")
    await h.say("say a foreground answer")
    await h.recorder.finished(2)
    await page.click("nav >> text=Chats")
    chat = page.locator("section.chat", has_text=CHAT.key)
    await expect(chat).to_contain_text("a foreground answer")
    await expect(chat).to_contain_text("docs")
    await shots(page, "chats")


async def test_readable_on_a_phone(logged_in, browser, shots):
    h, page = await logged_in()
    await page.set_viewport_size({"width": 390, "height": 844})
    await h.say("say " + "a-very-long-unbroken-line-of-agent-output-" * 8 + "; sleep 30")
    await expect(turn_card(page, CHAT.key).locator(".answer")).to_contain_text("unbroken")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone: {width} px wide"
    await shots(page, "now-phone")
    await page.click("nav >> text=Runs")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
