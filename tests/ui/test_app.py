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
