"""Find, load and validate scenario packs; render their system prompts; summarise them for the CLI.

Packs are the folders of `packs/` found by a sorted scan (folders starting with `_` hold shared YAML),
so adding a pack touches one folder. `scenario.yaml` may `include:` other YAML files, deep-merged
beneath it (after lm-evaluation-harness task configs). Every field is checked here once and turned
into the frozen dataclasses of `schema.py`; errors name the pack, the file and the field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from polyglm.platform.config import MediaPolicy
from polyglm.platform.errors import PolyglmError
from polyglm.platform.paths import resolve_inside
from polyglm.scenarios.schema import (
    LABEL_SCORERS,
    LANGUAGES,
    FewShot,
    GenerationConfig,
    KbDocument,
    KnowledgeBaseConfig,
    Language,
    SafetyConfig,
    ScenarioError,
    ScenarioPack,
)
from polyglm.scenarios.tooling import ToolSpec, load_tools, tool_spec

PACKS_DIR = Path(__file__).parent / "packs"
MANIFEST = "scenario.yaml"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n?(.*)\Z", re.DOTALL)
_DOC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- discovery


def list_packs(packs_dir: Path | None = None) -> list[str]:
    """Pack names: every folder of `packs_dir` not starting with `_` or `.`, sorted."""
    root = packs_dir or PACKS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def load_pack(name: str, packs_dir: Path | None = None) -> ScenarioPack:
    """Load and validate one pack: manifest (with includes), tools named in it, knowledge-base files."""
    root = (packs_dir or PACKS_DIR) / name
    if name not in list_packs(packs_dir):
        available = ", ".join(list_packs(packs_dir)) or "none"
        raise ScenarioError(f"unknown scenario {name!r}; available: {available} (packs are folders in {root.parent})")
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise ScenarioError(f"scenario pack {name!r}: {manifest} is missing; every pack needs a {MANIFEST}")
    raw, sources = _read_with_includes(name, root, manifest, ())
    pack = _pack_from_dict(raw, _Where(pack=name, file=_file_label(manifest, sources), root=root), sources)
    load_tools(pack)  # imports tools.py: every tool named in the YAML must exist and be a @tool
    load_documents(pack)  # every kb file must have valid front matter; every language covered
    return pack


# ---------------------------------------------------------------- YAML + include


def _read_yaml(pack: str, path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario pack {pack!r}: {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario pack {pack!r}: cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario pack {pack!r}: {path} must hold a mapping (key: value lines) at the top level")
    return raw


def _read_with_includes(
    pack: str, root: Path, path: Path, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], list[Path]]:
    """The file's mapping deep-merged over its includes (in order); returns it and the files used, base first."""
    raw = _read_yaml(pack, path)
    merged: dict[str, Any] = {}
    sources: list[Path] = []
    for target in _include_targets(pack, root, path, raw.pop("include", None)):
        if target in (*chain, path):
            cycle = " -> ".join(str(p) for p in (*chain, path, target))
            raise ScenarioError(f"scenario pack {pack!r}: {path}: field `include` makes a cycle: {cycle}")
        included, included_sources = _read_with_includes(pack, root, target, (*chain, path))
        merged = deep_merge(merged, included)
        sources.extend(included_sources)
    return deep_merge(merged, raw), [*sources, path]


def _include_targets(pack: str, root: Path, path: Path, value: Any) -> list[Path]:
    entries = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ScenarioError(f"scenario pack {pack!r}: {path}: field `include` must be a path or a list of paths")
    targets = [(path.parent / entry).resolve() for entry in entries]
    for entry, target in zip(entries, targets, strict=True):
        if not _includable(root, target):
            raise ScenarioError(
                f"scenario pack {pack!r}: {path}: field `include`: {entry!r} ({target}) is outside the pack folder "
                f"{root.resolve()} and the shared `_*` folders beside it; include only the pack's own YAML or "
                f"shared YAML such as ../_base/base.yaml"
            )
        if not target.is_file():
            raise ScenarioError(f"scenario pack {pack!r}: {path}: field `include`: {entry!r} ({target}) does not exist")
    return targets


def _includable(root: Path, target: Path) -> bool:
    """Inside the pack folder, or inside a shared folder (`_` + name) of the packs directory."""
    if resolve_inside(root, target) is not None:
        return True
    shared = [folder for folder in root.parent.glob("_*") if folder.is_dir()]
    return any(resolve_inside(folder, target) is not None for folder in shared)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) in `override` replaces `base`."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _file_label(manifest: Path, sources: Sequence[Path]) -> str:
    included = [str(p) for p in sources if p != manifest]
    return f"{manifest} (merged with {', '.join(included)})" if included else str(manifest)


# ---------------------------------------------------------------- field validation


@dataclass(frozen=True)
class _Where:
    """Where a value sits, so that an error can name pack, file and field."""

    pack: str
    file: str
    root: Path
    field: str = ""
    languages: tuple[str, ...] = ()

    def at(self, key: str | int) -> _Where:
        name = f"{self.field}[{key}]" if isinstance(key, int) else f"{self.field}.{key}" if self.field else key
        return _Where(self.pack, self.file, self.root, name, self.languages)

    def with_languages(self, languages: tuple[str, ...]) -> _Where:
        return _Where(self.pack, self.file, self.root, self.field, languages)

    def fail(self, problem: str) -> ScenarioError:
        return ScenarioError(f"scenario pack {self.pack!r}: {self.file}: field `{self.field}`: {problem}")


def _text(where: _Where, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.fail(f"must be non-empty text, got {value!r}")
    return value.strip()


def _integer(where: _Where, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.fail(f"must be an integer >= {minimum}, got {value!r}")
    return value


def _number(where: _Where, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise where.fail(f"must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _mapping(where: _Where, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.fail(f"must be a mapping (key: value), got {type(value).__name__}")
    return value


def _text_list(where: _Where, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise where.fail(f"must be a list, got {type(value).__name__} {value!r}")
    return tuple(_text(where.at(i), item) for i, item in enumerate(value))


def _per_language(where: _Where, value: Any, parse: Callable[[_Where, Any], Any], *, every: bool = True) -> Mapping:
    """A mapping language -> parsed value; `every` requires an entry for each of the pack's languages."""
    entries = _mapping(where, value)
    stray = sorted(set(entries) - set(where.languages))
    if stray:
        raise where.fail(f"has entries for {stray}, which are not in `languages` {list(where.languages)}")
    missing = [lang for lang in where.languages if lang not in entries] if every else []
    if missing:
        raise where.fail(f"needs an entry for every language; missing {missing}")
    return MappingProxyType({lang: parse(where.at(lang), entries[lang]) for lang in where.languages if lang in entries})


def _parse_languages(where: _Where, value: Any) -> tuple[str, ...]:
    codes = _text_list(where, value)
    unknown = [code for code in codes if code not in LANGUAGES]
    if unknown or not codes:
        raise where.fail(f"unknown language(s) {unknown or '(empty list)'}; known: {', '.join(LANGUAGES)}")
    if len(set(codes)) != len(codes):
        raise where.fail(f"lists a language twice: {list(codes)}")
    return codes


def _parse_name(where: _Where, value: Any) -> str:
    name = _text(where, value)
    if name != where.root.name:
        raise where.fail(f"must equal the folder name {where.root.name!r}, got {name!r}")
    return name


def _parse_few_shot(where: _Where, value: Any) -> Mapping[str, tuple[FewShot, ...]]:
    def examples(at: _Where, items: Any) -> tuple[FewShot, ...]:
        if not isinstance(items, list):
            raise at.fail(f"must be a list of {{user, assistant}} mappings, got {type(items).__name__}")
        return tuple(_few_shot_item(at.at(i), item) for i, item in enumerate(items))

    return _per_language(where, value, examples, every=False)


def _few_shot_item(where: _Where, value: Any) -> FewShot:
    item = _mapping(where, value)
    return FewShot(
        user=_text(where.at("user"), item.get("user")), assistant=_text(where.at("assistant"), item.get("assistant"))
    )


def _parse_labels(where: _Where, value: Any) -> Mapping[str, tuple[str, ...]]:
    sets = {str(name): _text_list(where.at(str(name)), labels) for name, labels in _mapping(where, value).items()}
    for name, labels in sets.items():
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise where.at(name).fail(f"needs at least two distinct labels, got {list(labels)}")
    return MappingProxyType(sets)


def _parse_label_scorers(where: _Where, value: Any) -> Mapping[str, str]:
    scorers = {str(name): _text(where.at(str(name)), scorer) for name, scorer in _mapping(where, value).items()}
    for name, scorer in scorers.items():
        if scorer not in LABEL_SCORERS:
            raise where.at(name).fail(f"unknown scorer {scorer!r}; scorers are: {', '.join(LABEL_SCORERS)}")
    return MappingProxyType(scorers)


def _check_label_scorers(where: _Where, labels: Mapping[str, tuple[str, ...]], scorers: Mapping[str, str]) -> None:
    """Each scored set is a declared label set holding exactly the labels its scorer gives."""
    for name, scorer in scorers.items():
        if name not in labels:
            raise where.at(name).fail(f"names no label set under `labels:` (sets: {', '.join(labels) or 'none'})")
        if set(labels[name]) != set(LABEL_SCORERS[scorer]):
            raise where.at(name).fail(
                f"scorer {scorer!r} gives the labels {list(LABEL_SCORERS[scorer])}, but labels.{name} is "
                f"{list(labels[name])}: make the set those labels or drop the scorer"
            )


def _pack_file(where: _Where, value: Any) -> Path:
    """A path named in scenario.yaml, relative to the pack folder and refused when it leads out of it."""
    relative = _text(where, value)
    if resolve_inside(where.root, relative) is None:
        raise where.fail(
            f"{relative!r} points outside the pack folder {where.root.resolve()}; keep the pack's files inside it "
            f"and name them relative to it (e.g. kb, data/train.jsonl)"
        )
    return where.root / relative


def _parse_knowledge_base(where: _Where, value: Any) -> KnowledgeBaseConfig:
    kb = _mapping(where, value)
    folder = _pack_file(where.at("folder"), kb.get("folder"))
    if not folder.is_dir() or not any(folder.glob("*.md")):
        raise where.at("folder").fail(f"{folder} must be a folder holding the knowledge base as *.md files")
    chunk_chars = _integer(where.at("chunk_chars"), kb.get("chunk_chars"), 50)
    overlap = _integer(where.at("chunk_overlap"), kb.get("chunk_overlap", 0), 0)
    if overlap >= chunk_chars // 2:
        raise where.at("chunk_overlap").fail(f"must be less than half of chunk_chars ({chunk_chars}), got {overlap}")
    return KnowledgeBaseConfig(
        folder=folder,
        chunk_chars=chunk_chars,
        chunk_overlap=overlap,
        top_k=_integer(where.at("top_k"), kb.get("top_k"), 1),
        bm25_weight=_number(where.at("bm25_weight"), kb.get("bm25_weight"), 0.0, 1.0),
    )


def _parse_function_names(where: _Where, value: Any) -> tuple[str, ...]:
    names = _text_list(where, value)
    for index, name in enumerate(names):
        if not _TOOL_NAME.match(name):
            raise where.at(index).fail(f"{name!r} is not a Python function name")
    if len(set(names)) != len(names):
        raise where.fail(f"names a function twice: {list(names)}")
    return names


def _parse_data_file(where: _Where, value: Any) -> Path:
    path = _pack_file(where, value)
    if not path.is_file():
        raise where.fail(f"{path} does not exist")
    return path


def _parse_safety(where: _Where, value: Any) -> SafetyConfig:
    safety = _mapping(where, value)
    return SafetyConfig(
        rules=_per_language(where.at("rules"), safety.get("rules"), _text_list),
        refuse_topics=_text_list(where.at("refuse_topics"), safety.get("refuse_topics", [])),
        escalation=_per_language(where.at("escalation"), safety.get("escalation"), _text),
        escalate_on=_per_language(where.at("escalate_on"), safety.get("escalate_on", {}), _patterns, every=False),
    )


def _patterns(where: _Where, value: Any) -> tuple[str, ...]:
    patterns = _text_list(where, value)
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise where.at(index).fail(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


def _parse_generation(where: _Where, value: Any) -> GenerationConfig:
    generation = _mapping(where, value)
    return GenerationConfig(
        max_new_tokens=_integer(where.at("max_new_tokens"), generation.get("max_new_tokens"), 1),
        temperature=_number(where.at("temperature"), generation.get("temperature"), 0.0, 2.0),
    )


def _parse_media(where: _Where, value: Any) -> MediaPolicy:
    try:
        return MediaPolicy.from_dict(value, "scenario.yaml")
    except PolyglmError as exc:
        raise where.fail(str(exc).removeprefix("scenario.yaml: ")) from None


_REQUIRED = object()


@dataclass(frozen=True)
class _Field:
    parse: Callable[[_Where, Any], Any]
    default: Any = _REQUIRED  # raw YAML value used when the field is absent


# scenario.yaml field -> how to read it. `languages` is read first: other fields are checked against it.
_FIELDS: Mapping[str, _Field] = MappingProxyType(
    {
        "name": _Field(_parse_name),
        "version": _Field(lambda where, value: _integer(where, value, 1)),
        "title": _Field(lambda where, value: _per_language(where, value, _text)),
        "system_prompt": _Field(lambda where, value: _per_language(where, value, _text)),
        "few_shot": _Field(_parse_few_shot, default={}),
        "labels": _Field(_parse_labels, default={}),
        "label_scorers": _Field(_parse_label_scorers, default={}),
        "knowledge_base": _Field(_parse_knowledge_base),
        "tools": _Field(_parse_function_names, default=[]),
        "planners": _Field(_parse_function_names, default=[]),
        "finetune_data": _Field(_parse_data_file),
        "eval_set": _Field(_parse_data_file),
        "safety": _Field(_parse_safety),
        "generation": _Field(_parse_generation),
        "media": _Field(_parse_media, default=None),
    }
)


def _pack_from_dict(raw: Mapping[str, Any], where: _Where, sources: Sequence[Path]) -> ScenarioPack:
    unknown = sorted(set(raw) - set(_FIELDS) - {"languages"})
    if unknown:
        raise where.at(unknown[0]).fail(f"is not a scenario.yaml field; fields are: languages, {', '.join(_FIELDS)}")
    languages = _parse_languages(where.at("languages"), _required(where.at("languages"), raw, "languages", _REQUIRED))
    where = where.with_languages(languages)
    values = {
        key: spec.parse(where.at(key), _required(where.at(key), raw, key, spec.default))
        for key, spec in _FIELDS.items()
    }
    _check_label_scorers(where.at("label_scorers"), values["labels"], values["label_scorers"])
    return ScenarioPack(root=where.root, languages=languages, sources=tuple(sources), **values)


def _required(where: _Where, raw: Mapping[str, Any], key: str, default: Any) -> Any:
    if key in raw:
        return raw[key]
    if default is _REQUIRED:
        raise where.fail("is required but missing")
    return default


# ---------------------------------------------------------------- knowledge-base files and JSONL data


def load_documents(pack: ScenarioPack) -> list[KbDocument]:
    """Every kb/*.md of the pack, sorted by file name; ids unique, every pack language covered."""
    documents = [_read_document(pack, path) for path in sorted(pack.knowledge_base.folder.glob("*.md"))]
    seen: dict[str, Path] = {}
    for doc in documents:
        if doc.doc_id in seen:
            raise ScenarioError(
                f"scenario pack {pack.name!r}: {doc.path}: field `id`: "
                f"{doc.doc_id!r} is also used by {seen[doc.doc_id]}"
            )
        seen[doc.doc_id] = doc.path
    missing = sorted(set(pack.languages) - {doc.lang for doc in documents})
    if missing:
        raise ScenarioError(
            f"scenario pack {pack.name!r}: {pack.knowledge_base.folder}: no document in {missing}; cover every language"
        )
    return documents


def _read_document(pack: ScenarioPack, path: Path) -> KbDocument:
    where = _Where(pack=pack.name, file=str(path), root=pack.root, languages=pack.languages)
    if resolve_inside(pack.root, path) is None:  # a symlink in kb/ must not publish a file from elsewhere
        raise where.at("path").fail(f"resolves to {path.resolve()}, outside the pack folder; copy the file in instead")
    text = path.read_text(encoding="utf-8").lstrip("\ufeff").replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise where.at("front matter").fail("the file must start with a `---` block holding id, title and lang")
    try:
        front = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise where.at("front matter").fail(f"not valid YAML: {exc}") from None
    front = _mapping(where.at("front matter"), front)
    doc_id = _text(where.at("id"), front.get("id"))
    if not _DOC_ID.match(doc_id):
        raise where.at("id").fail(f"{doc_id!r} must be letters, digits, '-', '_' or '.', no spaces")
    lang = _text(where.at("lang"), front.get("lang"))
    if lang not in pack.languages:
        raise where.at("lang").fail(f"{lang!r} is not one of the pack's languages {list(pack.languages)}")
    return KbDocument(
        doc_id=doc_id,
        title=_text(where.at("title"), front.get("title")),
        lang=lang,
        tags=_text_list(where.at("tags"), front.get("tags", [])),
        body=_text(where.at("body"), match.group(2)),
        path=path,
    )


def read_jsonl(pack: ScenarioPack, path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; a bad line is an error naming the file and line number."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"scenario pack {pack.name!r}: {path}: line {number} is not valid JSON: {exc}"
            ) from None
        if not isinstance(item, dict):
            raise ScenarioError(f"scenario pack {pack.name!r}: {path}: line {number} must be a JSON object")
        items.append(item)
    return items


# ---------------------------------------------------------------- prompts


def language_of(pack: ScenarioPack, lang: str) -> Language:
    if lang not in pack.languages:
        raise ScenarioError(f"scenario pack {pack.name!r} has no language {lang!r}; it has {list(pack.languages)}")
    return LANGUAGES[lang]


def render_system_prompt(
    pack: ScenarioPack, lang: str, tools: Sequence[ToolSpec | Callable] = (), *, today: date | None = None
) -> str:
    """The pack's system prompt in `lang`: {today} and {tools} filled, safety rules and escalation appended.

    A prompt without a {tools} slot still gets the tool list, so the model always knows what it may call.
    """
    language = language_of(pack, lang)
    template = pack.system_prompt[lang]
    specs = [tool_spec(t) for t in tools]
    tools_text = "\n".join(describe_tool(spec) for spec in specs) or language.no_tools
    sections = [template.replace("{today}", (today or date.today()).isoformat()).replace("{tools}", tools_text)]
    if specs and "{tools}" not in template:
        sections.append(f"{language.tools_heading}\n{tools_text}")
    sections.append(language.rules_heading + "".join(f"\n- {rule}" for rule in pack.safety.rules[lang]))
    if pack.safety.refuse_topics:
        sections.append(language.refuse_heading + "".join(f"\n- {topic}" for topic in pack.safety.refuse_topics))
    sections.append(f"{language.escalation_heading}\n{pack.safety.escalation[lang]}")
    return "\n\n".join(section.strip() for section in sections)


def describe_tool(spec: ToolSpec) -> str:
    """One tool for a prompt: signature with JSON types, description, one line per argument."""
    properties = spec.parameters["properties"]
    signature = ", ".join(f"{name}: {_type_text(schema)}" for name, schema in properties.items())
    lines = [f"- {spec.name}({signature}): {spec.description}"]
    lines += [f"    {name}: {schema['description']}" for name, schema in properties.items()]
    return "\n".join(lines)


def _type_text(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        text = " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    elif schema["type"] == "array":
        text = f"list[{_type_text(schema['items'])}]"
    elif "additionalProperties" in schema:
        text = f"object[string, {_type_text(schema['additionalProperties'])}]"
    else:
        text = schema["type"]
    return f"{text} | null" if schema.get("nullable") else text


def few_shot_messages(pack: ScenarioPack, lang: str) -> list[dict[str, str]]:
    """The pack's few-shot examples in `lang` as alternating user/assistant chat messages."""
    language_of(pack, lang)
    messages: list[dict[str, str]] = []
    for example in pack.few_shot.get(lang, ()):
        messages += [{"role": "user", "content": example.user}, {"role": "assistant", "content": example.assistant}]
    return messages


# ---------------------------------------------------------------- summaries for `polyglm scenarios list`


def pack_summary(pack: ScenarioPack) -> dict[str, Any]:
    """Plain-JSON facts about a pack: what it covers and how much data it holds."""
    documents = load_documents(pack)
    return {
        "name": pack.name,
        "version": pack.version,
        "title": dict(pack.title),
        "languages": list(pack.languages),
        "tools": list(pack.tools),
        "labels": {name: list(labels) for name, labels in pack.labels.items()},
        "label_scorers": dict(pack.label_scorers),
        "kb_documents": len(documents),
        "kb_documents_by_lang": dict(sorted(Counter(doc.lang for doc in documents).items())),
        "train_items": _count_lines(pack.finetune_data),
        "eval_items": _count_lines(pack.eval_set),
        "path": str(pack.root),
    }


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def scenarios_table(as_json: bool = False, packs_dir: Path | None = None) -> str:
    """Every pack as a table (or JSON list); a pack that fails to load is shown with its error."""
    rows = [_summary_or_error(name, packs_dir) for name in list_packs(packs_dir)]
    if as_json:
        return json.dumps(rows, ensure_ascii=False, indent=2)
    header = f"{'name':18s} {'ver':>3s} {'languages':9s} {'docs':>4s} {'train':>5s} {'eval':>4s}  tools / title"
    return "\n".join([header, *(_table_line(row) for row in rows)])


def _summary_or_error(name: str, packs_dir: Path | None) -> dict[str, Any]:
    try:
        return pack_summary(load_pack(name, packs_dir))
    except ScenarioError as exc:
        return {"name": name, "error": str(exc)}


def _table_line(row: Mapping[str, Any]) -> str:
    if "error" in row:
        return f"{row['name']:18s} ERROR {row['error']}"
    title = row["title"].get("en") or next(iter(row["title"].values()))
    tools = ", ".join(row["tools"]) or "-"
    return (
        f"{row['name']:18s} {row['version']:>3d} {','.join(row['languages']):9s} {row['kb_documents']:>4d} "
        f"{row['train_items']:>5d} {row['eval_items']:>4d}  {title} [{tools}]"
    )
