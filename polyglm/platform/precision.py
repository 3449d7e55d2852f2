"""The one rule for the compute dtype: what this hardware runs natively, read at run time.

bf16 halves memory and, where the hardware has bf16 units (CUDA with bf16, CPUs with AMX or
AVX512-BF16), runs several times faster than fp32. Where it has none, PyTorch emulates bf16 through
fp32 conversions: a 1024^3 matmul on a 2-core AVX2 EPYC ran at 0.9 GFLOP/s in bf16 against 134 in
fp32, which turned a 36-step adapter retrain from minutes into hours. So nothing in polyglm names a
dtype by habit: training, inference, label scoring and encoders all ask `choose_dtype`, and an
explicit request still wins, with a warning when it asks for emulated bf16.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AUTO = "auto"
DTYPES = ("bfloat16", "float32")
# CPU instruction sets that give bf16 matmuls real hardware (oneDNN uses either).
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# ATen kernel levels below AVX512 cannot use those instructions even where the CPU has them
# (an old CPU, or ATEN_CPU_CAPABILITY=avx2 set to emulate one).
BF16_CAPABLE_ATEN_LEVELS = ("AVX512", "AMX", "AVX512_BF16", "AVX512_VNNI")

# Where bf16 is native, which jobs may use it: the quality each one was measured to keep.
BF16_WHEN_NATIVE: dict[str, bool] = {
    # Frozen LM under a trained adapter / LoRA: the trained weights and the optimizer stay fp32. The
    # reduced image retrain halves its held-out loss in either dtype (fp32 4.23 -> 1.35 at lr 4e-3).
    "training": True,
    # Generation, label scoring, encoders on a CPU: bf16 quality against fp32 answers and label
    # probabilities has not been measured, so CPU inference keeps fp32 unless a profile or the user
    # asks. On CUDA bf16 is the norm.
    "inference": False,
}


class PrecisionError(ValueError):
    """A dtype request that cannot be honoured (unknown name or job)."""


@dataclass(frozen=True)
class Hardware:
    """What the chosen device runs natively, as read at run time."""

    device: str  # "cpu" or "cuda[:N]"
    cpu_capability: str  # ATen's CPU kernel level: torch.backends.cpu.get_cpu_capability(), e.g. "AVX2"
    cpu_bf16_flags: tuple[str, ...]  # bf16 instruction sets the CPU reports, e.g. ("amx_bf16", "avx512_bf16")
    cuda_bf16: bool  # the CUDA device runs bf16 (torch.cuda.is_bf16_supported()); False on CPU

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def native_bf16(self) -> bool:
        if self.is_cuda:
            return self.cuda_bf16
        return bool(self.cpu_bf16_flags) and self.cpu_capability.upper() in BF16_CAPABLE_ATEN_LEVELS

    def describe(self) -> str:
        if self.is_cuda:
            return f"{self.device}: bf16 {'native' if self.cuda_bf16 else 'not supported'}"
        flags = "+".join(self.cpu_bf16_flags) or "no bf16 instructions"
        native = "native" if self.native_bf16 else "emulated (slow)"
        return f"cpu: ATen {self.cpu_capability}, {flags}; bf16 {native}"


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a job runs in, and why."""

    dtype: str  # "bfloat16" or "float32"
    reason: str  # one line a user can check against `polyglm models list`
    warning: str | None = None  # set when an explicit request runs bf16 without hardware support

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def dtype_name(dtype: Any) -> str:
    """The dtype as manifests, metrics and the Models page write it: torch.float32 -> "float32"."""
    return str(dtype).removeprefix("torch.")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """CPU feature flags; empty where /proc/cpuinfo is missing (non-Linux: no bf16 assumed)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@functools.cache
def detect_hardware(device: str = "cpu") -> Hardware:
    """Read the device's bf16 support once per process."""
    import torch

    if device.startswith("cuda"):
        return Hardware(device, "n/a", (), bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()))
    capability = str(torch.backends.cpu.get_cpu_capability())
    flags = cpu_flags()
    return Hardware(device, capability, tuple(f for f in NATIVE_BF16_CPU_FLAGS if f in flags), False)


def _normalise(requested: str | None) -> str:
    name = (requested or AUTO).removeprefix("torch.")
    if name not in (AUTO, *DTYPES):
        raise PrecisionError(f"dtype {requested!r} is not one of {AUTO}, {', '.join(DTYPES)}")
    return name


def choose_dtype(job: str, requested: str | None = None, hardware: Hardware | None = None) -> DtypeChoice:
    """The dtype for `job` ("training" or "inference") on `hardware` (default: this CPU).

    `requested` "auto"/None follows the rule; "bfloat16"/"float32" wins, warning when bf16 is emulated.
    """
    if job not in BF16_WHEN_NATIVE:
        raise PrecisionError(f"unknown job {job!r}; jobs are {', '.join(BF16_WHEN_NATIVE)}")
    hardware = hardware or detect_hardware("cpu")
    name = _normalise(requested)
    if name == "bfloat16" and not hardware.native_bf16:
        warning = (
            f"bfloat16 was asked for, but {hardware.describe()}: it will run far slower than float32. "
            "Drop the dtype option (or pass float32) unless you are checking bf16 numerics."
        )
        log.warning(warning)
        return DtypeChoice("bfloat16", "requested explicitly", warning)
    if name != AUTO:
        return DtypeChoice(name, "requested explicitly")
    if not hardware.native_bf16:
        return DtypeChoice("float32", "bf16 is not native here")
    if hardware.is_cuda or BF16_WHEN_NATIVE[job]:
        return DtypeChoice("bfloat16", "bf16 is native here")
    return DtypeChoice("float32", f"{job} keeps float32 on CPUs until bf16 quality is measured")


def capability_summary(device: str = "cpu", inference: str | None = None, training: str | None = None) -> dict:
    """What `polyglm models list` and the Models page show: the hardware and each job's dtype and why."""
    hardware = detect_hardware(device)
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    choices = {"inference": choose_dtype("inference", inference, hardware),
               "training": choose_dtype("training", training, hardware)}  # fmt: skip
    return {
        "device": device,
        "hardware": hardware.describe(),
        "native_bf16": hardware.native_bf16,
        **({"aten_cpu_capability_env": forced} if forced else {}),
        "dtypes": {job: {"dtype": c.dtype, "reason": c.reason} for job, c in choices.items()},
    }
