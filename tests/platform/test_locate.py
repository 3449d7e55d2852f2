import pytest

from polyglm.platform.config import Settings, load_profile
from polyglm.platform.errors import ModelMissingError
from polyglm.platform.locate import resolve_part


def test_unprepared_part_says_which_profile_file_and_command(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    with pytest.raises(ModelMissingError) as info:
        resolve_part(load_profile("offline"), "language_model", settings)
    message = str(info.value)
    assert "profile 'offline'" in message
    assert str(tmp_path / "parts" / "gemma-3-270m-polyglm") in message
    assert "polyglm models prepare --profile offline" in message


def test_hub_part_is_never_fetched_and_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelMissingError, match=r"hf download THUDM/glm-4-9b-chat-hf"):
        resolve_part(load_profile("glm4-9b"), "language_model", Settings(cache_dir=tmp_path))


def test_whisper_checkpoint_missing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("polyglm.platform.locate.WHISPER_ROOT", tmp_path)
    with pytest.raises(ModelMissingError, match=rf"{tmp_path}/large-v3.pt is missing"):
        resolve_part(load_profile("glm4-9b"), "speech", Settings(cache_dir=tmp_path))


def test_packaged_ocr_resolves_to_the_installed_package(tmp_path):
    path = resolve_part(load_profile("offline"), "ocr", Settings(cache_dir=tmp_path))
    assert (path / "models").is_dir()
