import subprocess
import sys
from pathlib import Path

import pytest

from polyglm.platform.config import _profile_from_dict, available_profiles, load_profile
from polyglm.platform.errors import ProfileError

REPO = Path(__file__).resolve().parents[2]


def test_required_profiles_exist():
    assert {"tiny", "offline", "glm4-9b", "glm-edge"} <= set(available_profiles())


@pytest.mark.parametrize("name", ["tiny", "offline", "glm4-9b", "glm-edge"])
def test_every_profile_names_all_parts(name):
    profile = load_profile(name)
    assert set(profile.parts) == {"language_model", "vision", "speech", "embedding", "ocr"}
    assert profile.title and profile.description


def test_glm_profiles_name_the_glm_family_and_vit_and_whisper():
    big, edge = load_profile("glm4-9b"), load_profile("glm-edge")
    assert big.part("language_model").ref == "THUDM/glm-4-9b-chat-hf"
    assert big.part("speech").ref == "large-v3"
    assert "vit" in big.part("vision").options["architecture"]
    assert edge.part("language_model").ref == "THUDM/glm-edge-1.5b-chat"
    assert edge.part("speech").ref == "small"
    assert edge.part("vision").options["architecture"].startswith("vit_base")


def test_unknown_profile_lists_the_valid_ones():
    listed = "gemma-base, glm-edge, glm4-9b, offline, smollm2, tiny"
    with pytest.raises(ProfileError, match=rf"unknown profile 'nope'; available: {listed}"):
        load_profile("nope")


def test_part_needs_exactly_one_locator(tmp_path):
    raw = {"language_model": {"kind": "causal_lm", "hub": "a/b", "path": "/x"}}
    with pytest.raises(ProfileError, match="needs exactly one of prepared, hub, path, whisper, package"):
        _profile_from_dict("x", raw, tmp_path / "x.yaml")


def test_profile_without_language_model_is_refused(tmp_path):
    with pytest.raises(ProfileError, match="needs a `language_model:` section"):
        _profile_from_dict("x", {"vision": {"kind": "timm", "path": "/x"}}, tmp_path / "x.yaml")


def test_missing_role_names_profile_and_file():
    profile = _profile_from_dict("x", {"language_model": {"kind": "causal_lm", "path": "/x"}}, Path("x.yaml"))
    with pytest.raises(ProfileError, match="profile 'x' has no speech part"):
        profile.part("speech")


def test_stdlib_platform_is_not_shadowed_from_repo_root():
    out = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.system())"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "Linux"


def test_importing_the_package_loads_no_model():
    code = (
        "import sys, polyglm.cli, polyglm.platform.loader, polyglm.encoders;"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
