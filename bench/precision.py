"""fp32 vs bf16 on this machine, and the dtype polyglm chooses for each job.

Prints matmul GFLOP/s in both dtypes measured side by side in one run (this machine is shared and
noisy: read the ratio, not the absolute numbers), the detected hardware, and `choose_dtype` for
training and inference. Optional: the frozen offline LM's forward throughput in each dtype.
Run: .venv/bin/python bench/precision.py [--size 1024] [--lm]
Emulate an AVX2-only CPU: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/precision.py
"""

from __future__ import annotations

import argparse
import time

import torch

from polyglm.platform.precision import capability_summary


def matmul_gflops(dtype: torch.dtype, size: int, seconds: float = 1.5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: first call picks kernels
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or runs < 2:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def lm_items_per_second(dtype: torch.dtype, batch: int = 8, tokens: int = 64, seconds: float = 5.0) -> float:
    from polyglm.platform.loader import load_platform

    model = load_platform("offline", device="cpu").lm.model.to(dtype).eval()
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens))
    with torch.no_grad():
        model(input_ids=ids)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or runs < 2:
            model(input_ids=ids)
            runs += 1
    return batch * runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="square matmul size")
    parser.add_argument("--lm", action="store_true", help="also time the offline LM forward (batch 8 x 64 tokens)")
    args = parser.parse_args()
    summary = capability_summary("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {summary['hardware']}")
    fp32, bf16 = (matmul_gflops(d, args.size) for d in (torch.float32, torch.bfloat16))
    print(f"matmul {args.size}^3: float32 {fp32:.1f} GFLOP/s, bfloat16 {bf16:.1f} GFLOP/s, ratio {bf16 / fp32:.2f}x")
    if args.lm:
        lm32, lm16 = (lm_items_per_second(d) for d in (torch.float32, torch.bfloat16))
        print(f"offline LM forward: float32 {lm32:.1f} items/s, bfloat16 {lm16:.1f} items/s, {lm16 / lm32:.2f}x")
    for job, choice in summary["dtypes"].items():
        print(f"chosen for {job}: {choice['dtype']} ({choice['reason']})")


if __name__ == "__main__":
    main()
