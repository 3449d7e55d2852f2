"""Transposed weight copies for CPU decoding (platform/decode_layout.py): same greedy output as stock
nn.Linear, a weight changed in place is seen, and training never goes through the copies."""

from __future__ import annotations

import torch

from polyglm.platform.decode_layout import _COPY, stock_linears, use_transposed_weights
from polyglm.platform.engine import GenerationOptions, generate_ids


def test_the_cpu_lm_decodes_through_the_copies_with_the_stock_greedy_output(tiny_platform):
    lm = tiny_platform.lm
    linears = [m for m in lm.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all("forward" in m.__dict__ for m in linears)  # LanguageModel.load switched them on
    options = GenerationOptions(max_new_tokens=24, repetition_penalty=1.0)
    for prompt in ("Tell me about the sea.", "请介绍一下杭州。", "2 + 2 ="):
        ids = lm.chat_ids([{"role": "user", "content": prompt}])
        ours = generate_ids(lm.model, ids, [], options)
        assert all(_COPY in m.__dict__ for m in linears)  # the decode steps used the copies
        with stock_linears(lm.model):
            assert generate_ids(lm.model, ids, [], options) == ours


def test_a_weight_changed_in_place_is_seen_and_training_uses_the_weight_itself():
    layer = torch.nn.Linear(64, 32)
    use_transposed_weights(layer)
    x = torch.randn(1, 64)
    with torch.no_grad():
        before = layer(x)
        layer.weight.data += 0.5  # what a LoRA merge does: no version bump, the sampled checksum sees it
        after = layer(x)
        assert torch.allclose(after, torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert not torch.allclose(before, after)
    layer(x).sum().backward()  # autograd recording: the stock product, so the weight gets its gradient
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    many = torch.randn(40, 64)  # a prompt's rows: the stock product too
    with torch.no_grad():
        assert torch.equal(layer(many), torch.nn.functional.linear(many, layer.weight, layer.bias))
