import pytest
import torch

from polyglm.platform.adapters import (
    AdapterError,
    AdapterManifest,
    build_projector,
    load_adapter,
    output_length,
    save_adapter,
)


@pytest.mark.parametrize(
    ("spec", "frames", "slots"),
    [("linear", 50, 50), ("mlp2x_gelu", 50, 50), ("mlp3x_gelu", 7, 7), ("pool4_mlp2x_gelu", 50, 13),
     ("pool2_mlp2x_gelu", 1, 1), ("resampler32", 150, 32), ("resampler8", 3, 8)],
)  # fmt: skip
def test_projector_shapes(spec, frames, slots):
    projector = build_projector(spec, 48, 96)
    out = projector(torch.randn(2, frames, 48))
    assert out.shape == (2, slots, 96)
    assert output_length(projector, frames) == slots


def test_pooling_averages_windows():
    projector = build_projector("pool2_mlp1x_gelu", 2, 2)
    linear = projector.mlp[0]
    torch.nn.init.eye_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    out = projector(torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]]))
    assert torch.allclose(out, torch.tensor([[[2.0, 1.0], [5.0, 4.0]]]))  # last window padded by repetition


@pytest.mark.parametrize("spec", ["", "mlp", "mlp0x_gelu", "pool4", "Linear", "resampler0", "linear; rm -rf /"])
def test_unknown_spec_is_refused(spec):
    with pytest.raises(AdapterError, match="unknown projector spec"):
        build_projector(spec, 4, 4)


def _manifest(**overrides) -> AdapterManifest:
    fields = dict(modality="image", spec="mlp2x_gelu", encoder_id="prepared:enc", encoder_hash="e1",
                  lm_id="prepared:lm", lm_hash="l1", d_in=8, d_out=16, seed=3, metrics={"loss": 1.0})  # fmt: skip
    return AdapterManifest(**(fields | overrides))


def test_checkpoint_round_trip(tmp_path):
    projector = build_projector("mlp2x_gelu", 8, 16)
    save_adapter(projector, _manifest(), tmp_path)
    loaded, manifest = load_adapter(tmp_path, "prepared:enc", "e1", "prepared:lm", "l1")
    x = torch.randn(1, 3, 8)
    assert torch.equal(loaded(x), projector(x))
    assert manifest.metrics == {"loss": 1.0} and manifest.seed == 3


@pytest.mark.parametrize(
    ("args", "problem"),
    [(("prepared:other", "e1", "prepared:lm", "l1"), "trained for encoder prepared:enc"),
     (("prepared:enc", "e2", "prepared:lm", "l1"), "weights e1"),
     (("prepared:enc", "e1", "prepared:lm2", "l1"), "trained for language model prepared:lm"),
     (("prepared:enc", "e1", "prepared:lm", "l9"), "weights l1")],
)  # fmt: skip
def test_loading_against_another_encoder_or_lm_is_refused(tmp_path, args, problem):
    save_adapter(build_projector("mlp2x_gelu", 8, 16), _manifest(), tmp_path)
    with pytest.raises(AdapterError, match=problem):
        load_adapter(tmp_path, *args)


def test_missing_or_broken_manifest_is_explained(tmp_path):
    with pytest.raises(AdapterError, match=r"has no manifest\.json"):
        load_adapter(tmp_path, "a", "b", "c", "d")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not a valid adapter manifest"):
        load_adapter(tmp_path, "a", "b", "c", "d")
