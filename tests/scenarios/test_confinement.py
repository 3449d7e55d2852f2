"""A pack's YAML can name only files inside the pack (or shared `_*` YAML): no `../` or absolute escapes."""

from __future__ import annotations

import pytest

from polyglm.pipelines.scenario_eval import media_path
from polyglm.platform.errors import InputError
from polyglm.platform.paths import resolve_inside
from polyglm.scenarios.loader import load_pack
from polyglm.scenarios.schema import ScenarioError
from tests.scenarios.conftest import write_pack


def _error(packs_dir) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_pack("demo", packs_dir)
    return str(caught.value)


@pytest.fixture
def outside(tmp_path):
    """A valid-looking data file and kb folder next to (not inside) the packs directory."""
    (tmp_path / "secret.jsonl").write_text('{"id": "x", "lang": "en", "messages": []}\n', encoding="utf-8")
    (tmp_path / "other_kb").mkdir()
    (tmp_path / "other_kb" / "a.md").write_text("---\nid: a\ntitle: A\nlang: en\n---\nbody\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("field", ["finetune_data", "eval_set"])
def test_data_files_outside_the_pack_are_refused(packs_dir, outside, field):
    write_pack(packs_dir, overrides={field: "../../secret.jsonl"})
    message = _error(packs_dir)
    assert f"field `{field}`: '../../secret.jsonl' points outside the pack folder" in message
    assert "keep the pack's files inside it" in message
    write_pack(packs_dir, overrides={field: str(outside / "secret.jsonl")})  # absolute, existing, outside
    assert "points outside the pack folder" in _error(packs_dir)


def test_an_absolute_path_inside_the_pack_is_accepted(packs_dir):
    root = write_pack(packs_dir)
    write_pack(packs_dir, overrides={"eval_set": str(root / "data" / "eval.jsonl")})
    assert load_pack("demo", packs_dir).eval_set == root / "data" / "eval.jsonl"


def test_knowledge_base_folder_outside_the_pack_is_refused(packs_dir, outside):
    write_pack(packs_dir, overrides={"knowledge_base": {"folder": "../../other_kb"}})
    assert "field `knowledge_base.folder`: '../../other_kb' points outside the pack folder" in _error(packs_dir)


def test_a_kb_symlink_that_leads_out_of_the_pack_is_refused(packs_dir, outside):
    root = write_pack(packs_dir)
    (root / "kb" / "zz-link.md").symlink_to(outside / "other_kb" / "a.md")
    assert "outside the pack folder; copy the file in instead" in _error(packs_dir)


def test_include_outside_the_pack_and_the_shared_folders_is_refused(packs_dir, outside):
    (outside / "evil.yaml").write_text("generation: {max_new_tokens: 5, temperature: 0.0}\n", encoding="utf-8")
    root = write_pack(packs_dir)
    manifest = root / "scenario.yaml"
    original = manifest.read_text(encoding="utf-8")
    for entry in ("../../evil.yaml", str(outside / "evil.yaml")):
        manifest.write_text(f"include: {entry}\n" + original, encoding="utf-8")
        message = _error(packs_dir)
        assert f"field `include`: '{entry}'" in message and "is outside the pack folder" in message
    # another pack's folder is not shared either: only `_`-prefixed folders are
    write_pack(packs_dir, "other")
    manifest.write_text("include: ../other/scenario.yaml\n" + original, encoding="utf-8")
    assert "is outside the pack folder" in _error(packs_dir)


def test_shared_and_own_includes_still_load(packs_dir):
    (packs_dir / "_base").mkdir()
    (packs_dir / "_base" / "base.yaml").write_text("generation: {max_new_tokens: 7, temperature: 0.0}\n")
    root = write_pack(packs_dir, drop=("generation",))
    (root / "extra.yaml").write_text("version: 3\n", encoding="utf-8")
    manifest = root / "scenario.yaml"
    body = manifest.read_text(encoding="utf-8").replace("version: 1\n", "")
    manifest.write_text("include: [../_base/base.yaml, extra.yaml]\n" + body, encoding="utf-8")
    pack = load_pack("demo", packs_dir)
    assert pack.generation.max_new_tokens == 7 and pack.version == 3


def test_eval_media_uses_the_same_rule(packs_dir, outside):
    write_pack(packs_dir)
    pack = load_pack("demo", packs_dir)
    assert media_path(pack, "data/eval.jsonl") == (pack.root / "data" / "eval.jsonl").resolve()
    for escape in ("../../secret.jsonl", str(outside / "secret.jsonl")):
        with pytest.raises(InputError, match="points outside the scenario pack folder"):
            media_path(pack, escape)


def test_resolve_inside(tmp_path):
    (tmp_path / "a").mkdir()
    assert resolve_inside(tmp_path / "a", "b/../c") == (tmp_path / "a" / "c").resolve()
    assert resolve_inside(tmp_path / "a", "../a2") is None  # a sibling with a common prefix is outside
    assert resolve_inside(tmp_path / "a", "/etc/passwd") is None
