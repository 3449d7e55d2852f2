"""Faster batch-1 decoding on a CPU: linear layers multiply by a transposed copy of their weight.

A decode step reads every weight once, so its speed is bounded by memory bandwidth. nn.Linear stores its
weight as (out x in) and computes x @ W.T; for the few rows of a decode step BLAS runs that "NT" product
at ~15.5 GB/s on this project's 2-core machines, against ~27 GB/s for x @ W_t with W_t (in x out)
contiguous ("NN"). 94 % of a step is these products, so Gemma-3-270M's fp32 decode went from 13.3 to
17.2 tokens/s, 31.6 % -> 40.9 % of the bandwidth bound, with the same greedy output
(`python bench/decode.py --profile offline --tokens 48 --stock --dtypes float32`).

The copy is made on first use and made again whenever the weight changes (its storage, its version
counter or a sampled checksum, so an in-place merge through `.data` is seen too). Only fp32 CPU weights,
only products of at most ROW_LIMIT rows (decode steps and label extensions; prompts keep the stock
path), and never while autograd is recording: training is untouched. The cost is one more copy of
every weight in memory (+1.07 GB for the offline LM).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

ROW_LIMIT = 16  # rows of x (batch x new tokens) up to which the transposed copy is used
_COPY = "_polyglm_weight_t"  # (fingerprint, W_t) kept in the module's __dict__: not a parameter or buffer
_SAMPLES = 257  # elements of each weight in the checksum (spread over all of it; each is a cache miss)


def _fingerprint(weight: torch.Tensor) -> tuple:
    flat = weight.detach().reshape(-1)
    return weight.data_ptr(), weight._version, float(flat[:: max(1, flat.numel() // _SAMPLES)].sum())


def _nn_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight = self.weight
    rows = x.numel() // max(x.shape[-1], 1)
    recording = torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)
    if rows > ROW_LIMIT or recording or weight.dtype != torch.float32 or weight.device.type != "cpu":
        return torch.nn.functional.linear(x, weight, self.bias)
    key = _fingerprint(weight)
    saved = self.__dict__.get(_COPY)
    if saved is None or saved[0] != key:
        saved = (key, weight.detach().t().contiguous())
        self.__dict__[_COPY] = saved
    out = x @ saved[1]
    return out if self.bias is None else out + self.bias


def use_transposed_weights(model: Any) -> int:
    """Route every nn.Linear of `model` through `_nn_forward`; returns how many."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for module in linears:
        module.forward = types.MethodType(_nn_forward, module)
    return len(linears)


@contextmanager
def stock_linears(model: Any) -> Iterator[None]:
    """Every nn.Linear of `model` on its stock forward (x @ W.T) inside; polyglm's again after (benches, tests)."""
    patched = {m: m.__dict__.pop("forward") for m in model.modules() if "forward" in m.__dict__}
    try:
        yield
    finally:
        for module, forward in patched.items():
            module.forward = forward
