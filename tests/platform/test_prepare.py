import errno
import importlib.metadata
import json

import pytest

from polyglm.platform import prepare as prep
from polyglm.platform.config import Settings, load_profile
from polyglm.platform.errors import PrepareError
from polyglm.platform.recipes import RECIPES, PackagedFile, Recipe, locate_packaged_file, sha256_file


def _writer(calls: list, text: str = "weights"):
    def build(inputs, out_dir):
        calls.append(out_dir.name)
        (out_dir / "w.bin").write_text(text)
        return {"ok": True}

    return build


def test_tiny_profile_builds_then_second_run_skips(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    first = prep.prepare_profile(load_profile("tiny"), settings)
    assert [r.action for r in first] == ["built"] * 4
    second = prep.prepare_profile(load_profile("tiny"), settings)
    assert [r.action for r in second] == ["skipped"] * 4
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["parts"]) == {"tiny-glm", "tiny-vit", "tiny-whisper", "tiny-embedding"}


def test_tiny_build_is_deterministic(tmp_path):
    a, b = Settings(cache_dir=tmp_path / "a"), Settings(cache_dir=tmp_path / "b")
    for settings in (a, b):
        settings.cache_dir.mkdir()
        prep.prepare_part(RECIPES["tiny-vit"], settings)
    file = "parts/tiny-vit/model.safetensors"
    assert sha256_file(a.cache_dir / file) == sha256_file(b.cache_dir / file)


def test_killed_build_leaves_partial_that_rerun_repairs_without_redoing_finished_parts(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    calls: list = []
    done = Recipe(name="done", build=_writer(calls))

    def crash(inputs, out_dir):
        (out_dir / "half.bin").write_text("half")
        raise KeyboardInterrupt  # what a Ctrl-C or kill mid-conversion looks like from inside

    prep.prepare_part(done, settings)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_part(Recipe(name="flaky", build=crash), settings)
    assert (tmp_path / "parts" / "flaky.partial" / "half.bin").exists()
    assert not (tmp_path / "parts" / "flaky").exists()

    assert prep.prepare_part(done, settings).action == "skipped"
    report = prep.prepare_part(Recipe(name="flaky", build=_writer(calls)), settings)
    assert report.action == "built"
    assert not (tmp_path / "parts" / "flaky.partial").exists()
    assert calls == ["done.partial", "flaky.partial"]


def test_damaged_output_is_rebuilt(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    calls: list = []
    recipe = Recipe(name="part", build=_writer(calls))
    prep.prepare_part(recipe, settings)
    (tmp_path / "parts" / "part" / "w.bin").write_text("trunc")
    assert prep.prepare_part(recipe, settings).action == "built"
    assert len(calls) == 2


def test_changed_recipe_version_rebuilds(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    calls: list = []
    prep.prepare_part(Recipe(name="part", build=_writer(calls)), settings)
    assert prep.prepare_part(Recipe(name="part", build=_writer(calls), version=2), settings).action == "built"


def _installed_file() -> tuple[str, str, str]:
    dist = importlib.metadata.distribution("PyYAML")
    return "PyYAML", dist.version, "yaml/__init__.py"


def test_packaged_file_with_matching_sha256_is_found():
    name, version, path = _installed_file()
    real = importlib.metadata.distribution(name).locate_file(path)
    assert locate_packaged_file(PackagedFile(name, version, path, sha256_file(real))) == real


def test_corrupt_packaged_file_names_file_and_reinstall_command():
    name, version, path = _installed_file()
    with pytest.raises(PrepareError) as info:
        locate_packaged_file(PackagedFile(name, version, path, "0" * 64))
    message = str(info.value)
    assert "yaml/__init__.py is corrupt or truncated" in message
    assert f"pip install --force-reinstall --no-deps PyYAML=={version}" in message


def test_wrong_version_and_missing_package_are_explained():
    name, _version, path = _installed_file()
    with pytest.raises(PrepareError, match=r"expected 0\.0\.1"):
        locate_packaged_file(PackagedFile(name, "0.0.1", path, "0" * 64))
    with pytest.raises(PrepareError, match=r"no-such-pkg==1\.0 is not installed"):
        locate_packaged_file(PackagedFile("no-such-pkg", "1.0", "x", "0" * 64))


def test_offline_recipes_pin_every_input():
    for name in ("gemma-3-270m-polyglm", "whisper-base", "efficientnet-lite0", "all-minilm-l6-v2"):
        recipe = RECIPES[name]
        assert recipe.inputs and all(len(f.sha256) == 64 for f in recipe.inputs)


def test_cache_under_a_file_is_refused_with_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PrepareError, match="set POLYGLM_CACHE to a folder"):
        prep.prepare_profile(load_profile("tiny"), Settings(cache_dir=blocker / "cache"))


def test_read_only_cache_is_refused_with_the_fix(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr("pathlib.Path.write_text", read_only)
    with pytest.raises(PrepareError, match="read-only; set POLYGLM_CACHE to a writable folder"):
        prep.ensure_writable(tmp_path)


def test_full_disk_is_refused_before_building(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "free_bytes", lambda path: 1_000)
    calls: list = []
    with pytest.raises(PrepareError, match=r"not enough disk space .* to prepare part"):
        prep.prepare_part(Recipe(name="part", build=_writer(calls)), Settings(cache_dir=tmp_path))
    assert calls == []


def test_disk_filling_up_mid_build_is_explained_and_rerun_repairs(tmp_path):
    settings = Settings(cache_dir=tmp_path)

    def fills_disk(inputs, out_dir):
        (out_dir / "w.bin").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "w.bin"))

    with pytest.raises(PrepareError, match="the disk is full"):
        prep.prepare_part(Recipe(name="part", build=fills_disk), settings)
    assert prep.prepare_part(Recipe(name="part", build=_writer([])), settings).action == "built"
