"""The Streamlit app driven headless through AppTest on the tiny profile."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["polyglm_profile"] = "tiny"
    at.run()
    if page:
        # AppTest.switch_page only knows file pages; ours are callables registered by url_path.
        pages = at._registered_pages.items()
        at._page_hash = next(h for h, info in pages if info.get("url_pathname") == page)
        at.run()
    assert not at.exception, at.exception
    return at


def test_chat_streams_a_reply_and_keeps_history(tiny_platform):
    at = _app()
    assert at.title[0].value == "Chat"
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value.strip()
    at.chat_input[0].set_value("and again").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]


def test_models_page_lists_parts_and_loads_them(tiny_platform):
    at = _app("models")
    assert at.title[0].value == "Models"
    parts = at.dataframe[0].value
    assert list(parts["part"]) == ["language_model", "vision", "speech", "embedding", "ocr"]
    assert parts["present"].all()
    compute = at.dataframe[1].value
    assert list(compute["job"]) == ["inference", "training"] and set(compute["dtype"]) <= {"float32", "bfloat16"}
    assert at.caption[0].value.startswith("cpu: ATen ")
    at.button[0].click().run()
    loaded = at.dataframe[2].value
    assert set(loaded["part"]) == {"language_model", "vision", "speech", "embedding", "ocr"}
    assert (loaded["load time (s)"] >= 0).all() and set(loaded["device"]) == {"cpu"}


@pytest.mark.parametrize("profile", ["glm4-9b"])
def test_missing_weights_are_explained_not_crashed(profile):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["polyglm_profile"] = profile
    at.run()
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    assert "hf download THUDM/glm-4-9b-chat-hf" in at.error[0].value


def _png_with_text(text: str) -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    from polyglm.pipelines.adapter_data import font_path

    image = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(image).text(
        (20, 35), text, fill="black", font=ImageFont.truetype(str(font_path("DejaVuSans.ttf")), 36)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_chat_reads_an_attached_image_through_the_pipeline(tiny_platform, monkeypatch):
    import polyglm.pipelines.chat as chat

    seen = []
    real = chat.read_attachments

    def spy(platform, images, audio, policy=None):
        seen.append(real(platform, images, audio, policy))
        return seen[-1]

    monkeypatch.setattr(chat, "read_attachments", spy)
    at = _app()
    at.chat_input[0].upload("sign.png", _png_with_text("OPEN LATE"), "image/png").set_value("What does it say?")
    at.run()
    assert not at.exception and not at.error, at.error
    assert len(seen) == 1 and seen[0].ocr[0].replace(" ", "").upper() == "OPENLATE"
    assert seen[0].notes == ["profile 'tiny' has no trained image adapter: text only"]
    assert [m.name for m in at.chat_message] == ["user", "assistant"] and "sign.png" in at.caption[0].value


def test_a_corrupt_upload_is_one_clear_error(tiny_platform):
    at = _app()
    at.chat_input[0].upload("photo.png", b"\x89PNG\r\n\x1a\n not really", "image/png").set_value("What is this?").run()
    assert not at.exception
    assert "photo.png" in at.error[0].value
