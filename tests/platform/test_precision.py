"""The one dtype rule: bf16 only where the hardware runs it natively, whatever the code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyglm.platform import precision
from polyglm.platform.precision import Hardware, PrecisionError, choose_dtype

AVX2 = Hardware("cpu", "AVX2", (), False)
AMX = Hardware("cpu", "AVX512", ("amx_bf16", "avx512_bf16"), False)
# A CPU with bf16 instructions that ATen is told not to use (ATEN_CPU_CAPABILITY=avx2).
AVX512_BF16_LIMITED = Hardware("cpu", "AVX2", ("avx512_bf16",), False)
CUDA_BF16 = Hardware("cuda", "n/a", (), True)
CUDA_OLD = Hardware("cuda", "n/a", (), False)


@pytest.mark.parametrize(
    ("hardware", "training", "inference"),
    [
        (AVX2, "float32", "float32"),
        (AVX512_BF16_LIMITED, "float32", "float32"),
        (AMX, "bfloat16", "float32"),
        (CUDA_BF16, "bfloat16", "bfloat16"),
        (CUDA_OLD, "float32", "float32"),
    ],
)
def test_auto_follows_native_support(hardware, training, inference):
    assert choose_dtype("training", hardware=hardware).dtype == training
    assert choose_dtype("inference", "auto", hardware=hardware).dtype == inference


def test_an_explicit_request_wins_and_warns_only_when_bf16_is_emulated(caplog):
    forced = choose_dtype("training", "bfloat16", hardware=AVX2)
    assert forced.dtype == "bfloat16" and "far slower than float32" in forced.warning
    assert "far slower" in caplog.text
    assert choose_dtype("training", "bfloat16", hardware=AMX).warning is None
    assert choose_dtype("training", "float32", hardware=AMX).dtype == "float32"
    assert choose_dtype("inference", "torch.bfloat16", hardware=AMX).dtype == "bfloat16"


def test_unknown_dtype_or_job_is_refused_by_name():
    with pytest.raises(PrecisionError, match="'float8'"):
        choose_dtype("training", "float8", hardware=AVX2)
    with pytest.raises(PrecisionError, match="unknown job 'serving'"):
        choose_dtype("serving", hardware=AVX2)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert {"avx2", "amx_bf16"} <= precision.cpu_flags(cpuinfo)
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.fixture
def simulated_cpu(monkeypatch):
    """Make this process see a CPU of the given kind, whatever it runs on."""

    def simulate(capability: str, flags: set[str]) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(precision, "cpu_flags", lambda *a: flags)
        precision.detect_hardware.cache_clear()

    yield simulate
    precision.detect_hardware.cache_clear()


def _dtypes_of(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters()}


def test_no_code_path_picks_bf16_on_a_cpu_without_it(tiny_platform, simulated_cpu, tmp_path, monkeypatch):
    """Inference parts, adapter training (stage 1 and 2) and scenario fine-tune, all on their defaults."""
    from polyglm.pipelines.finetune import FinetuneOptions, finetune_scenario
    from polyglm.pipelines.train_adapter import Stage2Options, TrainOptions, train_adapter, train_stage2
    from polyglm.platform.loader import load_platform

    simulated_cpu("AVX2", {"avx2", "fma"})
    platform = load_platform("tiny", device="cpu")
    for role in ("language_model", "vision", "speech", "embedding"):
        assert _dtypes_of(platform.get(role).model) == {torch.float32}, role
    for modality in ("audio", "image"):
        options = TrainOptions(profile="tiny", modality=modality, items=20, epochs=1, batch_size=4, eval_generate=2,
                               out_dir=tmp_path / modality)  # fmt: skip
        assert train_adapter(options, platform=platform)["lm_dtype"] == "float32"
    stage2 = train_stage2(Stage2Options(profile="tiny", adapters=(tmp_path / "audio", tmp_path / "image"), items=20,
                                        batch_size=4, out_dir=tmp_path / "stage2"), platform=platform)  # fmt: skip
    assert stage2["lm_dtype"] == "float32"
    monkeypatch.setenv("POLYGLM_CACHE", str(tmp_path / "cache"))
    manifest = finetune_scenario(FinetuneOptions(scenario="customer_service", profile="tiny", max_items=6,
                                                 out_dir=tmp_path / "ft", finetune_root=tmp_path / "ftroot"),
                                 platform=platform)  # fmt: skip
    assert manifest["metrics"]["lm_dtype"] == "float32"
    assert _dtypes_of(platform.lm.model) == {torch.float32}


def test_native_bf16_is_used_for_training_where_the_cpu_has_it(tiny_platform, simulated_cpu, tmp_path):
    from polyglm.pipelines.train_adapter import TrainOptions, train_adapter
    from polyglm.platform.loader import load_platform

    simulated_cpu("AVX512", {"avx512_bf16", "amx_bf16"})
    platform = load_platform("tiny", device="cpu")
    metrics = train_adapter(TrainOptions(profile="tiny", modality="image", items=20, epochs=1, batch_size=4,
                                         eval_generate=0, out_dir=tmp_path / "image"), platform=platform)  # fmt: skip
    assert metrics["lm_dtype"] == "bfloat16"
    assert platform.dtype == torch.float32  # inference on a CPU stays fp32


def test_models_list_shows_capability_and_dtypes(simulated_cpu):
    from polyglm.platform.inventory import profile_status

    simulated_cpu("AVX2", {"avx2"})
    compute = profile_status("tiny").compute
    assert compute["native_bf16"] is False and "bf16 emulated" in compute["hardware"]
    assert {job: d["dtype"] for job, d in compute["dtypes"].items()} == {"inference": "float32", "training": "float32"}
    json.dumps(compute)  # part of `models list --json`


def test_no_module_names_bf16_outside_the_rule():
    """A dtype picked by habit is how bf16 reached AVX2 machines; only precision.py may decide."""
    root = Path(__file__).resolve().parents[2] / "polyglm"
    allowed = {root / "platform" / "precision.py", root / "platform" / "convert" / "whisper_ct2.py",
               root / "platform" / "feature_cache.py"}  # fmt: skip
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path not in allowed
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if "bfloat16" in line.split("#")[0]
    ]
    assert not offenders, offenders
