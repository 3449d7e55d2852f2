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


SCREENSHOTS = REPO / "runs" / "screenshots"  # kept after the run (git-ignored), beside pytest's tmp copies


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


def _send(page, text: str, files: list[Path] = ()) -> None:
    chat = page.get_by_test_id("stChatInput")
    if files:
        chat.locator("input[type=file]").set_input_files([str(f) for f in files])
        for f in files:  # the chip of each staged file, before sending
            chat.get_by_text(f.name).wait_for(timeout=30_000)
    page.get_by_test_id("stChatInputTextArea").fill(text)
    # Streamlit keeps the send button disabled (and ignores Enter) until every staged file has
    # uploaded; pressing Enter before that dropped the message on a busy machine.
    send = chat.get_by_test_id("stChatInputSubmitButton")
    page.wait_for_function("(b) => !b.disabled", arg=send.element_handle(), timeout=60_000)
    send.click()


def _wait_for_reply(page, messages: int) -> None:
    """Done when the script stopped (no status widget), and the last of `messages` bubbles has text."""
    page.wait_for_function(
        f"!document.querySelector('[data-testid=stStatusWidget]') && "
        f"document.querySelectorAll('[data-testid=stChatMessage]').length == {messages} && "
        f"document.querySelectorAll('[data-testid=stChatMessageContent]')[{messages - 1}].innerText.trim().length > 0",
        timeout=180_000,  # a hang guard, not a speed check: the first turn of a fresh server loads every part
    )


def _open_assistants(page, app_url: str) -> None:
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Assistants").wait_for(timeout=60_000)


def test_assistants_chat_with_an_image_attachment(app_url, page, tmp_path):
    from tests.ui.test_app import _png_with_text

    sign = tmp_path / "sign.png"
    sign.write_bytes(_png_with_text("OPEN LATE"))
    _open_assistants(page, app_url)
    _send(page, "What does the sign say?", [sign])
    _wait_for_reply(page, 2)
    user, reply = page.get_by_test_id("stChatMessage").all()
    assert "What does the sign say?" in user.inner_text() and "sign.png" in user.inner_text()
    assert reply.get_by_test_id("stChatMessageContent").inner_text().strip()
    assert "profile 'tiny' has no trained image adapter: text only" in reply.inner_text()
    evidence = reply.get_by_test_id("stExpander")
    evidence.get_by_text("Read from the attachments").click()
    shown = evidence.get_by_test_id("stText")
    shown.wait_for(state="visible", timeout=10_000)
    assert "IMAGE TEXT 1" in shown.inner_text() and "OPEN" in shown.inner_text().upper()
    page.wait_for_timeout(500)  # the expander's opening animation, for the screenshot
    assert _screenshot(page, tmp_path, "assistants-image.png").stat().st_size > 10_000


# Draws `a` and `b` on a canvas in the font the element uses (with the browser's fallback) and says
# whether the pixels differ: a missing font draws both as the same "tofu" box.
_DRAWN_DIFFERENTLY = """([el, a, b]) => {
  const font = getComputedStyle(el).fontSize + ' ' + getComputedStyle(el).fontFamily;
  const draw = (text) => {
    const canvas = document.createElement('canvas'); canvas.width = 64; canvas.height = 64;
    const ctx = canvas.getContext('2d'); ctx.font = font; ctx.fillText(text, 4, 48);
    return ctx.getImageData(0, 0, 64, 64).data.join(',');
  };
  return draw(a) !== draw(b);
}"""


def test_a_chinese_message_renders_with_a_cjk_font(app_url, page, tmp_path):
    message = "你好！请用一句话介绍北京。"
    _open_assistants(page, app_url)
    _send(page, message)
    _wait_for_reply(page, 2)
    user = page.get_by_test_id("stChatMessage").first
    text = user.get_by_text(message)
    assert text.inner_text() == message
    handle = text.element_handle()
    # Two unassigned code points both draw as the missing-glyph box: the check can tell tofu from glyphs.
    assert not page.evaluate(_DRAWN_DIFFERENTLY, [handle, "\u0378", "\u0379"])
    assert page.evaluate(_DRAWN_DIFFERENTLY, [handle, "京", "\u0378"]), "no CJK font: run scripts/system-deps.sh"
    assert page.evaluate(_DRAWN_DIFFERENTLY, [handle, "你", "京"])
    _screenshot(page, tmp_path, "assistants-chinese.png")


def test_two_browser_sessions_chat_at_once_and_keep_their_own_history(app_url, page, tmp_path):
    second = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        for tab in (page, second):
            _open_assistants(tab, app_url)
        _send(page, "first session says hello")
        _send(second, "second session says hello")  # while the first one may still be answering
        for tab in (page, second):
            _wait_for_reply(tab, 2)
        assert "first session says hello" in page.get_by_test_id("stChatMessage").first.inner_text()
        assert "second session says hello" in second.get_by_test_id("stChatMessage").first.inner_text()
        assert "second session" not in "\n".join(page.get_by_test_id("stChatMessage").all_inner_texts())
        _screenshot(second, tmp_path, "assistants-second-session.png")
    finally:
        second.context.close()


def _grid_rows(frame, columns: int) -> list[list[str]]:
    """The cells of an st.dataframe, row by row: the grid draws on a canvas, but keeps accessible cells."""
    cells = frame.locator("[role=gridcell]").all_text_contents()
    return [cells[i : i + columns] for i in range(0, len(cells), columns)]


def test_models_page_in_a_real_browser(app_url, page, tmp_path):
    from polyglm.platform.inventory import profile_status

    status = profile_status("tiny")  # what the server reads too: the page must show exactly this
    page.goto(f"{app_url}/models", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Models & training").wait_for(timeout=60_000)
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
    _screenshot(page, tmp_path, "models.png")


def _tall_screenshot(page, tmp_path: Path, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport for the capture."""
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    page.wait_for_timeout(800)  # charts and images redraw at the new size
    try:
        return _screenshot(page, tmp_path, name)
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def _script_done(page, timeout: float = 120_000) -> None:
    """The script run ended: Streamlit's running indicator is gone (checked twice, a moment apart)."""
    for _ in range(2):
        page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout)
        page.wait_for_timeout(300)


def test_sentiment_page_analyses_an_uploaded_image_and_voice_note(app_url, page, tmp_path, tiny_platform):
    from polyglm.pipelines.attachments import decode_uploads
    from polyglm.pipelines.sentiment import SentimentInput, analyse
    from tests.ui.test_app import _png_with_text, _wav

    sign, note = tmp_path / "sign.png", tmp_path / "note.wav"
    sign.write_bytes(_png_with_text("GREAT DAY"))
    note.write_bytes(_wav(0.5))
    text = "I love this so much"
    page.goto(f"{app_url}/sentiment", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Sentiment").wait_for(timeout=60_000)
    page.get_by_label("Post text").fill(text)
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files([str(sign), str(note)])
    for name in ("sign.png", "note.wav"):
        uploader.get_by_text(name).wait_for(timeout=30_000)
    _script_done(page)
    page.get_by_role("button", name="Analyse").click()
    page.get_by_test_id("stMetricValue").wait_for(timeout=120_000)
    _script_done(page)
    # what the same inputs give through the pipeline in this process (the same tiny models)
    images, clips = decode_uploads([("sign.png", sign.read_bytes()), ("note.wav", note.read_bytes())])
    expected = analyse(tiny_platform, SentimentInput(text=text, images=tuple(images), audio=tuple(clips)))
    main = page.get_by_test_id("stMain")
    assert page.get_by_test_id("stMetricValue").inner_text() == expected.label
    shown = main.inner_text()
    for label, p in expected.probabilities.items():
        assert f"{label} {100 * p:.1f} %" in shown, (label, p)
    assert page.get_by_test_id("stVegaLiteChart").count() == 1  # the probability bars
    # (a half-width grid keeps only the columns in view in the DOM: look for the modality cells)
    cells = page.get_by_test_id("stDataFrame").first.locator("[role=gridcell]").all_text_contents()
    assert [c for c in cells if c in ("text", "image", "audio")] == ["text", "image", "audio"]
    ocr = page.get_by_test_id("stExpander").filter(has_text="Text in the images (OCR)")
    assert "sign.png" in ocr.inner_text() and ocr.get_by_test_id("stText").inner_text() == expected.evidence["ocr"][0]
    voice = page.get_by_test_id("stExpander").filter(has_text="Transcripts of the voice notes")
    assert "note.wav" in voice.inner_text()
    assert voice.get_by_test_id("stText").inner_text().strip() == expected.evidence["transcripts"][0].strip()
    assert _tall_screenshot(page, tmp_path, "sentiment.png").stat().st_size > 10_000


def test_batch_page_runs_a_small_manifest(app_url, page, tmp_path):
    import json
    import re

    from polyglm.evaluation.report import headline
    from tests.ui.test_app import _png_with_text
    from tests.ui.test_batch_page import CSV

    manifest, sign = tmp_path / "data.csv", tmp_path / "sign.png"
    manifest.write_text(CSV)
    sign.write_bytes(_png_with_text("GREAT"))
    page.goto(f"{app_url}/batch", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Batch evaluation").wait_for(timeout=60_000)
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files([str(manifest), str(sign)])
    for name in ("data.csv", "sign.png"):
        uploader.get_by_text(name).wait_for(timeout=30_000)
    _script_done(page)
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_test_id("stProgress").first.wait_for(timeout=30_000)  # the live progress bar
    success = page.get_by_test_id("stAlertContentSuccess")
    success.wait_for(timeout=180_000)
    _script_done(page)
    assert "5 items, 2 failed, 3 new in " in success.inner_text()
    folder = REPO / re.search(r"(runs/app/batch/\S+)", success.inner_text()).group(1)
    metrics = json.loads((folder / "metrics.json").read_text())
    frames = page.get_by_test_id("stDataFrame")
    frames.nth(1).locator("[role=gridcell]").first.wait_for(state="attached", timeout=30_000)
    shown = {row[0]: row[1] for row in _grid_rows(frames.nth(0), 2)}
    assert list(shown) == list(headline(metrics))
    assert {k: float(v) for k, v in shown.items()} == pytest.approx(
        {k: round(v, 4) for k, v in headline(metrics).items()}
    )
    failed = {row[0]: row[1] for row in _grid_rows(frames.nth(1), 2)}
    assert set(failed) == {"bad-label", "escape"} and "unknown label 'ecstatic'" in failed["bad-label"]
    assert page.get_by_test_id("stImage").count() == 4  # confusion, per class, reliability, latency
    assert _tall_screenshot(page, tmp_path, "batch.png").stat().st_size > 10_000
    with page.expect_download() as download:
        page.get_by_role("button", name="Download report.html").click()
    assert "<h1>labels</h1>" in Path(download.value.path()).read_text()
    shutil.rmtree(folder.parents[1])  # this browser session's uploads and run (kept when an assertion fails)
