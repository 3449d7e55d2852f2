import pytest

from polyglm.pipelines.chat import reply, stream_reply, validate_messages
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.errors import InputError

OPTIONS = GenerationOptions(max_new_tokens=16)


def test_streamed_pieces_join_to_the_full_reply(tiny_platform):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    pieces = list(stream_reply(tiny_platform, messages, OPTIONS))
    assert len(pieces) > 1
    assert "".join(pieces) == reply(tiny_platform, messages, OPTIONS)


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([], "no messages"),
        ([{"role": "user", "content": "   "}], "empty"),
        ([{"role": "robot", "content": "hi"}], "role must be"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "last message"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(messages, problem):
    with pytest.raises(InputError, match=problem):
        validate_messages(messages)
