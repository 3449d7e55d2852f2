"""Scenario turns refuse what they cannot answer honestly: empty posts, and messages that do not fit."""

from __future__ import annotations

import pytest
from PIL import Image

from polyglm.pipelines.scenario_chat import MAX_MESSAGE_CHARS, scenario_assistant
from polyglm.platform.errors import InputError


@pytest.fixture
def shop(tiny_platform):
    return scenario_assistant(tiny_platform, "customer_service", "en")


@pytest.fixture
def posts(tiny_platform):
    return scenario_assistant(tiny_platform, "social_sentiment", "en")


@pytest.mark.parametrize("method", ["neighbours", "lm"])
@pytest.mark.parametrize("message", ["", " \n\t "])
def test_an_empty_post_gets_no_labels(posts, method, message):
    with pytest.raises(InputError, match=r"^the message is empty: write some text"):
        posts.classify(message, method=method)


def test_an_image_only_post_needs_text_for_the_neighbour_vote(posts):
    with pytest.raises(InputError, match=r"neighbour vote compares the post's text.*--label-method lm"):
        posts.classify("", images=[Image.new("RGB", (32, 32), "white")], method="neighbours")


def test_an_empty_scenario_message_is_refused_before_any_work(shop, monkeypatch):
    monkeypatch.setattr(shop, "_generate", lambda messages: pytest.fail("generated for an empty message"))
    with pytest.raises(InputError, match=r"^the message is empty"):
        shop.respond("   ")


def test_messages_over_the_documented_cap_are_refused_before_any_work(shop, monkeypatch):
    monkeypatch.setattr(shop, "_generate", lambda messages: pytest.fail("generated for an oversized message"))
    shop.check_message("x" * MAX_MESSAGE_CHARS)  # at the limit: fine
    with pytest.raises(InputError) as caught:
        shop.respond("x" * (MAX_MESSAGE_CHARS + 1))
    assert str(caught.value).startswith(f"the message is {MAX_MESSAGE_CHARS + 1:,} characters; scenario chat takes")
    assert "ScenarioAssistant.max_message_chars" in str(caught.value)


def test_a_message_that_overflows_the_models_context_is_refused_with_the_room_left(shop, monkeypatch):
    """The pack's prompt fits a 4,000-token context; a 4,000-character message then does not."""
    monkeypatch.setattr(shop.platform.lm.model.config, "max_position_embeddings", 4_000)
    monkeypatch.setattr(shop, "_generate", lambda messages: pytest.fail("generated past the context"))
    with pytest.raises(InputError) as caught:
        shop.respond("Where is my parcel? I have waited for weeks. " * 90)
    message = str(caught.value)
    assert "tokens; the pack's prompt, the passages and room for the reply take" in message
    assert "of the model's 4,000-token context, leaving" in message and "shorten the message" in message


def test_a_message_that_fits_is_answered(shop, monkeypatch):
    monkeypatch.setattr(shop.platform.lm.model.config, "max_position_embeddings", 4_000)
    monkeypatch.setattr(shop, "_generate", lambda messages: "Your parcel is on its way.")
    monkeypatch.setattr(shop, "grounding_guard", False)  # the words stand: the context check is under test
    assert shop.respond("Where is my parcel?").answer == "Your parcel is on its way."
