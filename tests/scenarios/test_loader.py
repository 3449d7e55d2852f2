"""Pack discovery, include merging, validation errors that name pack/file/field, prompts and summaries."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest
import yaml

from polyglm.platform.errors import PolyglmError
from polyglm.scenarios.loader import (
    deep_merge,
    few_shot_messages,
    list_packs,
    load_documents,
    load_pack,
    pack_summary,
    render_system_prompt,
    scenarios_table,
)
from polyglm.scenarios.schema import ScenarioError
from polyglm.scenarios.tooling import load_tools
from tests.scenarios.conftest import manifest, write_doc, write_pack


def error_of(name: str, packs_dir) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_pack(name, packs_dir)
    return str(caught.value)


def test_list_packs_is_a_sorted_scan_that_skips_underscore_and_files(packs_dir):
    for name in ("zeta", "alpha", "_base", ".hidden"):
        (packs_dir / name).mkdir()
    (packs_dir / "notes.md").write_text("not a pack")
    assert list_packs(packs_dir) == ["alpha", "zeta"]


def test_the_repository_ships_the_customer_service_pack():
    assert "customer_service" in list_packs()
    assert "_base" not in list_packs()


def test_a_valid_pack_loads_into_frozen_typed_sections(packs_dir):
    root = write_pack(packs_dir)
    pack = load_pack("demo", packs_dir)
    assert pack.name == "demo" and pack.root == root
    assert pack.languages == ("zh", "en")
    assert pack.knowledge_base.chunk_chars == 200 and pack.knowledge_base.folder == root / "kb"
    assert pack.tools == ("echo", "grade")
    assert pack.safety.rules["en"] == ("Be polite.",)
    assert pack.few_shot["en"][0].assistant == "Hello!" and "zh" not in pack.few_shot
    assert pack.labels == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        pack.name = "other"
    with pytest.raises(TypeError):
        pack.title["en"] = "changed"  # read-only mapping


def test_unknown_scenario_lists_the_valid_ones(packs_dir):
    write_pack(packs_dir, "alpha")
    write_pack(packs_dir, "beta")
    message = error_of("gamma", packs_dir)
    assert "unknown scenario 'gamma'" in message and "alpha, beta" in message


def test_scenario_error_is_a_polyglm_error():
    assert issubclass(ScenarioError, PolyglmError)


def test_malformed_yaml_names_pack_file_and_line(packs_dir):
    root = write_pack(packs_dir, manifest_text="name: demo\ntitle: {en: [unclosed\n")
    message = error_of("demo", packs_dir)
    assert "scenario pack 'demo'" in message
    assert str(root / "scenario.yaml") in message
    assert "not valid YAML" in message and "line" in message


def test_a_missing_required_field_is_named(packs_dir):
    write_pack(packs_dir, drop=("system_prompt",))
    message = error_of("demo", packs_dir)
    assert "field `system_prompt`: is required but missing" in message


def test_a_missing_language_entry_is_named(packs_dir):
    write_pack(packs_dir, overrides={"title": {"zh": None}})
    assert "field `title.zh`: must be non-empty text" in error_of("demo", packs_dir)


def test_a_per_language_field_needs_every_language(packs_dir):
    data = manifest("demo")
    del data["safety"]["escalation"]["en"]
    write_pack(packs_dir, manifest_text=yaml.safe_dump(data, allow_unicode=True))
    message = error_of("demo", packs_dir)
    assert "field `safety.escalation`: needs an entry for every language; missing ['en']" in message


def test_unknown_language_is_refused(packs_dir):
    write_pack(packs_dir, overrides={"languages": ["zh", "fr"]})
    message = error_of("demo", packs_dir)
    assert "field `languages`: unknown language(s) ['fr']" in message and "known: zh, en" in message


def test_a_label_set_that_is_not_a_list_is_refused(packs_dir):
    write_pack(packs_dir, overrides={"labels": {"polarity": "positive, negative"}})
    assert "field `labels.polarity`: must be a list" in error_of("demo", packs_dir)


def test_labels_load_as_tuples(packs_dir):
    write_pack(packs_dir, overrides={"labels": {"polarity": ["positive", "neutral", "negative"]}})
    assert load_pack("demo", packs_dir).labels["polarity"] == ("positive", "neutral", "negative")


@pytest.mark.parametrize(
    ("scorers", "problem"),
    [
        ({"polarity": "vibes"}, "field `label_scorers.polarity`: unknown scorer 'vibes'; scorers are: sentiment"),
        ({"mood": "sentiment"}, "field `label_scorers.mood`: names no label set under `labels:` (sets: polarity)"),
        ({"polarity": "sentiment"}, "scorer 'sentiment' gives the labels ['negative', 'neutral', 'positive'], but "
                                    "labels.polarity is ['good', 'bad']"),
    ],
)  # fmt: skip
def test_a_label_scorer_must_name_a_known_scorer_and_a_set_with_its_labels(packs_dir, scorers, problem):
    write_pack(packs_dir, overrides={"labels": {"polarity": ["good", "bad"]}, "label_scorers": scorers})
    assert problem in error_of("demo", packs_dir)


def test_a_label_scorer_loads_for_a_set_with_its_labels(packs_dir):
    labels = {"polarity": ["positive", "neutral", "negative"], "emotion": ["joy", "anger"]}
    write_pack(packs_dir, overrides={"labels": labels, "label_scorers": {"polarity": "sentiment"}})
    assert load_pack("demo", packs_dir).label_scorers == {"polarity": "sentiment"}


def test_a_tool_named_in_yaml_but_missing_in_tools_py_is_named(packs_dir):
    root = write_pack(packs_dir, overrides={"tools": ["echo", "teleport"]})
    message = error_of("demo", packs_dir)
    assert "`teleport`" in message and str(root / "tools.py") in message and "field `tools`" in message


def test_an_undecorated_tool_is_refused(packs_dir):
    write_pack(packs_dir, overrides={"tools": ["helper"]}, tools_py="def helper():\n    return {}\n")
    assert "`helper` is not decorated with @tool" in error_of("demo", packs_dir)


def test_a_missing_tools_file_is_named(packs_dir):
    write_pack(packs_dir, tools_py=None)
    assert "tools.py is missing" in error_of("demo", packs_dir)


def test_a_tools_file_that_fails_to_import_is_named(packs_dir):
    write_pack(packs_dir, tools_py="def broken(:\n")
    assert "tools.py failed to import: SyntaxError" in error_of("demo", packs_dir)


def test_a_pack_without_tools_needs_no_tools_file(packs_dir):
    write_pack(packs_dir, overrides={"tools": []}, tools_py=None)
    pack = load_pack("demo", packs_dir)
    assert pack.tools == () and load_tools(pack) == []


def test_missing_kb_folder_and_data_files_are_named(packs_dir):
    write_pack(packs_dir, overrides={"knowledge_base": {"folder": "documents"}})
    assert "field `knowledge_base.folder`" in error_of("demo", packs_dir)
    write_pack(packs_dir, "other", overrides={"finetune_data": "data/missing.jsonl"})
    assert "field `finetune_data`" in error_of("other", packs_dir) and "missing.jsonl does not exist" in error_of(
        "other", packs_dir
    )


def test_numbers_are_range_checked(packs_dir):
    write_pack(packs_dir, overrides={"knowledge_base": {"bm25_weight": 1.5}})
    assert "field `knowledge_base.bm25_weight`: must be a number from 0 to 1" in error_of("demo", packs_dir)
    write_pack(packs_dir, "other", overrides={"knowledge_base": {"chunk_overlap": 150}})
    assert "field `knowledge_base.chunk_overlap`" in error_of("other", packs_dir)


def test_name_must_match_the_folder_and_unknown_fields_are_refused(packs_dir):
    write_pack(packs_dir, overrides={"name": "something_else"})
    assert "must equal the folder name 'demo'" in error_of("demo", packs_dir)
    write_pack(packs_dir, "other", overrides={"tool": ["echo"]})
    assert "field `tool`: is not a scenario.yaml field" in error_of("other", packs_dir)


def test_include_is_deep_merged_under_the_pack(packs_dir):
    base = packs_dir / "_base"
    base.mkdir()
    (base / "base.yaml").write_text(
        "knowledge_base: {folder: kb, chunk_chars: 300, chunk_overlap: 30, top_k: 3, bm25_weight: 0.4}\n"
        "safety: {rules: {zh: [基础规则], en: [Base rule]}, refuse_topics: [base topic], "
        "escalation: {zh: 基础, en: Base}}\n"
        "generation: {max_new_tokens: 99, temperature: 0.1}\n",
        encoding="utf-8",
    )
    write_pack(packs_dir, drop=("generation", "safety", "knowledge_base"))
    manifest = packs_dir / "demo" / "scenario.yaml"
    extra = "include: ../_base/base.yaml\nknowledge_base: {chunk_chars: 250}\nsafety: {refuse_topics: [pack topic]}\n"
    manifest.write_text(extra + manifest.read_text(encoding="utf-8"), encoding="utf-8")
    pack = load_pack("demo", packs_dir)
    assert pack.knowledge_base.chunk_chars == 250  # the pack wins
    assert pack.knowledge_base.top_k == 3 and pack.knowledge_base.bm25_weight == 0.4  # the rest comes from the base
    assert pack.safety.refuse_topics == ("pack topic",)  # lists replace, they do not append
    assert pack.safety.rules["en"] == ("Base rule",)
    assert pack.generation.max_new_tokens == 99
    assert pack.sources == ((base / "base.yaml").resolve(), manifest)


def test_include_cycles_and_missing_includes_are_named(packs_dir):
    write_pack(packs_dir)
    manifest = packs_dir / "demo" / "scenario.yaml"
    (packs_dir / "demo" / "loop.yaml").write_text("include: scenario.yaml\n", encoding="utf-8")
    original = manifest.read_text(encoding="utf-8")
    manifest.write_text("include: loop.yaml\n" + original, encoding="utf-8")
    assert "field `include` makes a cycle" in error_of("demo", packs_dir)
    manifest.write_text("include: ../_base/nope.yaml\n" + original, encoding="utf-8")
    assert "field `include`: '../_base/nope.yaml'" in error_of("demo", packs_dir)


def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert deep_merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # inputs untouched


def test_kb_documents_are_validated_by_file_and_field(packs_dir):
    root = write_pack(packs_dir)
    bad = write_doc(root / "kb", "extra", "Extra", "fr", "Body")
    message = error_of("demo", packs_dir)
    assert str(bad) in message and "field `lang`" in message
    bad.write_text("no front matter here", encoding="utf-8")
    assert "field `front matter`" in error_of("demo", packs_dir)
    bad.unlink()
    (root / "kb" / "zz-copy.md").write_text("---\nid: returns-en\ntitle: Copy\nlang: en\n---\nBody\n", encoding="utf-8")
    assert "'returns-en' is also used by" in error_of("demo", packs_dir)


def test_every_language_needs_a_kb_document(packs_dir):
    write_pack(packs_dir, docs={"only-en": ("Only English", "en", "Text.")})
    assert "no document in ['zh']" in error_of("demo", packs_dir)


def test_documents_load_sorted_with_front_matter(packs_dir):
    write_pack(packs_dir)
    docs = load_documents(load_pack("demo", packs_dir))
    assert [d.doc_id for d in docs] == ["returns-en", "returns-zh", "shipping-en", "shipping-zh"]
    assert docs[1].lang == "zh" and docs[1].title == "退货政策" and docs[1].body.startswith("签收后")


def test_system_prompt_fills_today_and_tools_and_appends_safety(packs_dir):
    write_pack(packs_dir)
    pack = load_pack("demo", packs_dir)
    tools = load_tools(pack)
    text = render_system_prompt(pack, "en", tools, today=date(2026, 1, 2))
    assert text.startswith("You are a demo helper. Today is 2026-01-02.\nTools:\n- echo(text: string, times: integer)")
    assert '- grade(level: "easy" | "hard"): Grade something.' in text
    assert "    times: How many times." in text
    assert "Rules you must always follow:\n- Be polite." in text
    assert "- politics" in text and text.endswith("I'll hand you over.")
    zh = render_system_prompt(pack, "zh", tools, today=date(2026, 1, 2))
    assert "今天是 2026-01-02" in zh and "必须遵守的规则：\n- 保持礼貌。" in zh


def test_tools_are_appended_when_the_prompt_has_no_slot(packs_dir):
    write_pack(packs_dir, overrides={"system_prompt": {"en": "Plain prompt.", "zh": "简单提示。"}})
    pack = load_pack("demo", packs_dir)
    assert "Tools you can call:\n- echo(" in render_system_prompt(pack, "en", load_tools(pack))
    assert "{tools}" not in render_system_prompt(pack, "en", [])


def test_prompt_for_a_language_the_pack_lacks_is_refused(packs_dir):
    write_pack(packs_dir)
    with pytest.raises(ScenarioError, match="has no language 'fr'"):
        render_system_prompt(load_pack("demo", packs_dir), "fr")


def test_few_shot_messages_alternate(packs_dir):
    write_pack(packs_dir)
    pack = load_pack("demo", packs_dir)
    assert few_shot_messages(pack, "en") == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert few_shot_messages(pack, "zh") == []


def test_pack_summary_and_table_show_broken_packs_with_their_error(packs_dir):
    write_pack(packs_dir, "alpha")
    write_pack(packs_dir, "beta", drop=("generation",))
    summary = pack_summary(load_pack("alpha", packs_dir))
    assert summary["kb_documents"] == 4 and summary["kb_documents_by_lang"] == {"en": 2, "zh": 2}
    assert summary["tools"] == ["echo", "grade"] and summary["train_items"] == 1 and summary["eval_items"] == 2
    rows = json.loads(scenarios_table(as_json=True, packs_dir=packs_dir))
    assert rows[0] == summary and rows[1]["name"] == "beta" and "generation" in rows[1]["error"]
    table = scenarios_table(packs_dir=packs_dir).splitlines()
    assert table[0].startswith("name") and table[1].startswith("alpha") and "Demo [echo, grade]" in table[1]
    assert table[2].startswith("beta") and "ERROR" in table[2]
