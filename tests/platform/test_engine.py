import torch

from polyglm.platform.engine import GenerationOptions, generate_ids, stream_tokens


def test_streamed_greedy_tokens_match_plain_generate(tiny_platform):
    lm = tiny_platform.lm
    prompt = lm.chat_ids([{"role": "user", "content": "hello"}])
    options = GenerationOptions(max_new_tokens=12, repetition_penalty=1.0)
    streamed = generate_ids(lm.model, prompt, [], options)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        plain = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                  eos_token_id=[-1], pad_token_id=0)  # fmt: skip
    assert streamed == plain[0, len(prompt) :].tolist()
    assert len(streamed) == 12


def test_stream_stops_at_a_stop_token(tiny_platform):
    lm = tiny_platform.lm
    prompt = lm.chat_ids([{"role": "user", "content": "hello"}])
    free = generate_ids(lm.model, prompt, [], GenerationOptions(max_new_tokens=8, repetition_penalty=1.0))
    stop = free[3]
    stopped = list(stream_tokens(lm.model, prompt, [stop], GenerationOptions(max_new_tokens=8, repetition_penalty=1.0)))
    assert stopped == free[: free.index(stop)]


def test_sampling_is_reproducible_with_a_seed(tiny_platform):
    lm = tiny_platform.lm
    prompt = lm.chat_ids([{"role": "user", "content": "hello"}])
    options = GenerationOptions(max_new_tokens=10, temperature=1.0, seed=7)
    assert generate_ids(lm.model, prompt, [], options) == generate_ids(lm.model, prompt, [], options)
