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


def _grid_rows(frame, columns: int) -> list[list[str]]:
    """The cells of an st.dataframe, row by row: the grid draws on a canvas, but keeps accessible cells."""
    cells = frame.locator("[role=gridcell]").all_text_contents()
    return [cells[i : i + columns] for i in range(0, len(cells), columns)]


def test_models_page_in_a_real_browser(app_url, page, tmp_path):
    from polyglm.platform.inventory import profile_status

    status = profile_status("tiny")  # what the server reads too: the page must show exactly this
    page.goto(f"{app_url}/models", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Models").wait_for(timeout=60_000)
    # st.dataframe draws on a canvas; its accessible grid cells exist in the DOM but are not "visible".
    page.get_by_text("prepared:tiny-glm").first.wait_for(state="attached", timeout=30_000)
    frames = page.get_by_test_id("stDataFrame")
    parts = _grid_rows(frames.nth(0), 6)  # part, kind, source, present, size (MB), licence
    assert [[row[0], row[1], row[2], row[3], row[5]] for row in parts] == [
        [p.role, p.kind, p.source, "true", p.licence] for p in status.parts
    ]
    assert [row[0] for row in parts] == ["language_model", "vision", "speech", "embedding", "ocr"]
    assert [float(row[4]) for row in parts] == [round(p.bytes / 1e6, 1) for p in status.parts]
    main = page.get_by_test_id("stMain")
    assert f"Profile tiny — {status.title}" in main.inner_text()
    # Compute: the hardware line and the dtype chosen for each job, with the reason
    assert status.compute["hardware"] in main.inner_text()
    dtypes = status.compute["dtypes"]
    assert _grid_rows(frames.nth(1), 3) == [[job, d["dtype"], d["reason"]] for job, d in dtypes.items()]
    # (what is loaded before the click depends on the other tests' use of the same server)

    page.get_by_role("button", name="Load all parts").click()
    page.get_by_text("loaded ocr").wait_for(timeout=60_000)  # the progress bar's last step
    # The third table lists what is loaded: one row per part, on the CPU, the LM in its inference dtype.
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stDataFrame]').length == 3 && [...document.querySelectorAll("
        "'[data-testid=stDataFrame]')[2].querySelectorAll('[role=gridcell]')].some(c => c.innerText.trim() == 'ocr')",
        timeout=60_000,
    )
    loaded = {row[0]: row for row in _grid_rows(frames.nth(2), 6)}  # part, model, parameters, device, dtype, s
    assert set(loaded) == {p.role for p in status.parts}, loaded
    assert loaded["language_model"][1:5:3] == ["tiny-glm", dtypes["inference"]["dtype"]], loaded
    assert all(row[3] == "cpu" for row in loaded.values()), loaded
    assert "Nothing loaded yet" not in main.inner_text()
    rss = page.get_by_test_id("stMetricValue").inner_text()
    assert rss.endswith(" MB") and int(rss.removesuffix(" MB").replace(",", "")) > 100, rss
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
