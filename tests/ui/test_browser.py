"""A real browser (Debian chromium, headless) against the real Streamlit server on the tiny profile."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {server.stdout.read() if server.stdout else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def app_url(tiny_platform):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "polyglm", "app", "--profile", "tiny", "--port", str(port), "--address", "127.0.0.1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run `make install` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def test_chat_in_a_real_browser_streams_an_answer(app_url, page, tmp_path):
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Chat").wait_for(timeout=60_000)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("What is the capital of France?")
    box.press("Enter")
    messages = page.get_by_test_id("stChatMessage")
    messages.nth(1).wait_for(timeout=60_000)
    # Done when the script stopped running (no status widget), the spinner is gone and the reply has text.
    page.wait_for_function(
        "!document.querySelector('[data-testid=stStatusWidget]') && "
        "!document.body.innerText.includes('Loading the language model') && "
        "document.querySelectorAll('[data-testid=stChatMessage]').length == 2 && "
        "document.querySelectorAll('[data-testid=stChatMessageContent]')[1].innerText.trim().length > 0",
        timeout=60_000,
    )
    assert messages.nth(1).get_by_test_id("stChatMessageContent").inner_text().strip()
    assert "What is the capital of France?" in messages.nth(0).inner_text()
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 10_000


def test_models_page_in_a_real_browser(app_url, page, tmp_path):
    page.goto(f"{app_url}/models", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Models").wait_for(timeout=60_000)
    # st.dataframe draws on a canvas; its accessible grid cells exist in the DOM but are not "visible".
    page.get_by_text("prepared:tiny-glm").first.wait_for(state="attached", timeout=30_000)
    page.get_by_role("button", name="Load all parts").click()
    page.get_by_text("loaded ocr").wait_for(timeout=60_000)  # the progress bar's last step
    # The second table lists what is loaded, with load times.
    page.wait_for_function("document.querySelectorAll('[data-testid=stDataFrame]').length == 2", timeout=60_000)
    page.get_by_text("Server process memory (RSS)").wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
