"""Batch-1 decode speed of a profile's LM against its memory-bandwidth bound, measured in one run.

At batch 1 every weight is read once per generated token, so tokens/s cannot exceed
(read bandwidth) / (bytes of weights read per token). This prints the read bandwidth measured now
(summing a buffer far larger than the caches), the bytes read per token (every matrix the decode step
multiplies by: the layers and the output head; the input embedding reads one row), the greedy
tokens/s of the plain path polyglm uses (`engine.stream_tokens`, i.e. `generate()` with a streamer),
and the fraction of the bound reached, for each dtype asked. polyglm's CPU path multiplies by transposed
weight copies (platform/decode_layout.py); `--stock` adds a row per dtype with stock nn.Linear (x @ W.T),
and says whether its greedy output equals polyglm's.

Run: .venv/bin/python bench/decode.py --profile offline [--dtypes float32 bfloat16] [--tokens 64] [--stock]
"""

from __future__ import annotations

import argparse
import time

import torch

from polyglm.platform.decode_layout import stock_linears
from polyglm.platform.engine import GenerationOptions, stream_tokens
from polyglm.platform.loader import load_platform

PROMPTS = (
    "请简单介绍一下杭州。",
    "Explain in two sentences why the sky is blue.",
    "退货的商品需要保留原包装吗？",
)


def read_bandwidth(gigabytes: float = 2.0, repeats: int = 5) -> float:
    """Bytes/s of streaming reads: the best of several sums over a buffer of `gigabytes`."""
    buffer = torch.ones(int(gigabytes * 1e9 / 4), dtype=torch.float32)
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - started)
    return buffer.numel() * 4 / best


def bytes_per_token(model: torch.nn.Module) -> int:
    """Weights a decode step reads: all parameters except the input embedding, plus the head once."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if head.data_ptr() == embedding.data_ptr():  # tied: counted once in parameters(), read once by the head
        return total
    return total - embedding.numel() * embedding.element_size()


def tokens_per_second(lm, new_tokens: int) -> tuple[float, list[list[int]]]:
    """Greedy decode through the product path; the first prompt also warms the kernels."""
    options = GenerationOptions(max_new_tokens=new_tokens, repetition_penalty=1.0)
    outputs, tokens, seconds = [], 0, 0.0
    for number, prompt in enumerate((PROMPTS[0], *PROMPTS)):
        ids = lm.chat_ids([{"role": "user", "content": prompt}])
        started = time.perf_counter()
        out = list(stream_tokens(lm.model, ids, [], options))  # no stop ids: always `new_tokens` tokens
        elapsed = time.perf_counter() - started
        if number:  # prompt 0 is the warm-up
            outputs.append(out)
            tokens, seconds = tokens + len(out), seconds + elapsed
    return tokens / seconds, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--stock", action="store_true", help="also measure stock nn.Linear (no transposed copies)")
    args = parser.parse_args()
    lm = load_platform(args.profile, device="cpu").lm
    bandwidth = read_bandwidth()
    print(f"threads {torch.get_num_threads()}; read bandwidth {bandwidth / 1e9:.1f} GB/s")
    reference = None
    for name in args.dtypes:
        lm.model.to(getattr(torch, name))
        per_token = bytes_per_token(lm.model)
        bound = bandwidth / per_token
        rate, outputs = tokens_per_second(lm, args.tokens)
        same = "reference" if reference is None else f"greedy output equal to {args.dtypes[0]}: {outputs == reference}"
        reference = reference or outputs
        print(f"{name:9s} weights read/token {per_token / 1e6:7.1f} MB  bound {bound:6.1f} tok/s  "
              f"measured {rate:6.1f} tok/s  = {rate / bound:5.1%} of the bound  ({same})")  # fmt: skip
        if args.stock:
            with stock_linears(lm.model):
                rate, outputs = tokens_per_second(lm, args.tokens)
            print(f"{name:9s} stock nn.Linear: {rate:6.1f} tok/s  = {rate / bound:5.1%} of the bound  "
                  f"(greedy output equal to polyglm's {args.dtypes[0]}: {outputs == reference})")  # fmt: skip
    print(f"measured again: read bandwidth {read_bandwidth() / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
