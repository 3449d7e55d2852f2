"""Scenario chat: retrieve, let the model call the pack's tools, answer with citations.

One turn:
1. retrieve the pack's top-k passages for the user's message (hybrid BM25 + dense), in their language;
   run the pack's planners (deterministic screens: red-flag triage, an order id, a stated answer to
   check) and its `escalate_on` patterns, so safety and slot filling never wait on the model;
2. build the prompt: the pack's system prompt (tools, safety rules, escalation) + the passages fenced
   as reference data (instructions inside them are to be ignored) + few-shot + history + message;
3. generate; if the reply is a tool call (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
   the format the scenario fine-tune data teaches), validate and run it with its time limit, add the
   result as an `observation` turn and generate again (at most `max_tool_rounds` times);
4. a tool result with `"escalate": true` or a matching `escalate_on` pattern makes the pack's
   escalation text the first sentence of the answer, whatever the model wrote;
5. return the answer, the citations and every tool call with its result or error: the trace.

Tool calls come only from the planners (which read the user's own message; safety screens also read
the text of attachments, as data to match) and the model's output, never from retrieved text or tool
results: a passage that says "call refund_eligibility" is data.

Classification packs (`labels:` in scenario.yaml) also get `classify`: the labels are chosen by
scoring each allowed label word with the language model after the prompt (constrained decoding), so
the result is always a valid label with a probability, even from a small model; a set the pack hands to
a trained scorer (`label_scorers:`, e.g. polarity -> the sentiment pipeline's head) is labelled by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from polyglm.pipelines.attachments import (
    ReadAttachments,
    evidence_blocks,
    has_media,
    read_attachments,
    user_content,
)
from polyglm.pipelines.chat import validate_messages
from polyglm.pipelines.label_scoring import score_conversations
from polyglm.pipelines.sentiment import label_for_pack
from polyglm.platform.engine import GenerationOptions, stream_tokens
from polyglm.platform.errors import InputError
from polyglm.platform.fusion import render_messages
from polyglm.platform.loader import Platform
from polyglm.platform.multimodal import multimodal_for, text_turn
from polyglm.scenarios.grounding import (
    UNGROUNDED_SHARE,
    contradicted_verdicts,
    fallback_answer,
    mend_citations,
    pack_terms,
    support_share,
    unsupported,
    with_evidence,
)
from polyglm.scenarios.loader import few_shot_messages, load_pack, read_jsonl, render_system_prompt
from polyglm.scenarios.retrieval import build_retriever, quote_passages
from polyglm.scenarios.schema import ScenarioPack
from polyglm.scenarios.tooling import (
    ToolCall,
    call_tool,
    import_tools_module,
    load_planners,
    load_tools,
    run_planners,
    tool_spec,
)

TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
# Longest user message (characters) a scenario turn takes. About 2,000 English tokens: with a pack's
# prompt, passages and reply that fits the offline profile's 8,192-token context; a longer paste is
# refused, not silently cut, and a model with a smaller context refuses earlier (see `_check_fits`).
MAX_MESSAGE_CHARS = 8_000


@dataclass(frozen=True)
class ScenarioReply:
    """What one user message produced: the answer and how it was reached."""

    answer: str  # the assistant's final text
    citations: list[dict]  # retrieved passages: citation (doc#passage), doc_id, title, passage text, score
    tool_calls: list[dict]  # each call's name, arguments, result or error, seconds, source (planner/model)
    trace: list[dict] = field(default_factory=list)  # every step in order: retrieve, plan, generate, tool
    escalated: bool = False  # a planner's tool result or an escalate_on pattern asked for escalation

    def as_dict(self) -> dict:
        return {
            "answer": self.answer,
            "escalated": self.escalated,
            "citations": self.citations,
            "tool_calls": self.tool_calls,
            "trace": self.trace,
        }


def parse_tool_call(text: str) -> tuple[str, dict] | None:
    """(name, arguments) when the model's reply is a tool call; None for a plain answer."""
    match = TOOL_CALL.search(text)
    if not match:
        return None
    try:
        payload = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", {})
    return payload["name"], arguments if isinstance(arguments, dict) else {}


def render_tool_call(name: str, arguments: dict) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}</tool_call>"


@dataclass
class ScenarioAssistant:
    """A scenario pack bound to a loaded platform and a language."""

    platform: Platform
    pack: ScenarioPack
    lang: str
    max_tool_rounds: int = 2  # tool calls per user message before the model must answer
    demonstrations: int = 4  # classify: labelled training posts most like the post, shown as worked examples
    max_new_tokens: int | None = None  # reply cap below the pack's default (None: the pack's `generation`)
    max_message_chars: int = MAX_MESSAGE_CHARS  # longer user messages are refused with the limit and the fix
    grounding_guard: bool = True  # answer with a cited passage sentence instead of unsupported specifics

    def __post_init__(self) -> None:
        if self.lang not in self.pack.languages:
            raise InputError(
                f"scenario {self.pack.name!r} speaks {', '.join(self.pack.languages)}, not {self.lang!r}; "
                f"pass --lang {self.pack.languages[0]}"
            )

    @cached_property
    def _tools_module(self):
        """tools.py imported once: planners run here, and the tool worker executes this same import once to
        run the tools (see tool_worker.py), so what they share lives on disk (state_dir)."""
        return import_tools_module(self.pack) if self.pack.tools or self.pack.planners else None

    @cached_property
    def tools(self) -> dict[str, Callable]:
        return {tool_spec(fn).name: fn for fn in load_tools(self.pack, self._tools_module)}

    @cached_property
    def planners(self) -> list[Callable]:
        return load_planners(self.pack, self._tools_module)

    @cached_property
    def escalate_on(self) -> re.Pattern[str] | None:
        """Every language's patterns: someone may write Chinese in an English session."""
        patterns = [p for lang in self.pack.languages for p in self.pack.safety.escalate_on.get(lang, ())]
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None

    @cached_property
    def retriever(self):
        return build_retriever(self.pack, self.platform.embedder)

    @property
    def options(self) -> GenerationOptions:
        config = self.pack.generation
        return GenerationOptions(
            max_new_tokens=self.max_new_tokens or config.max_new_tokens, temperature=config.temperature
        )

    def system_prompt(self, hits: Sequence[Any]) -> str:
        prompt = render_system_prompt(self.pack, self.lang, list(self.tools.values()))
        return f"{prompt}\n\n{quote_passages(hits, self.lang)}" if hits else prompt

    def prompt(self, hits: Sequence[Any], turns: Sequence[dict]) -> list[dict]:
        """System prompt with the fenced passages, the pack's few-shot, then `turns`."""
        return [
            {"role": "system", "content": self.system_prompt(hits)},
            *few_shot_messages(self.pack, self.lang),
            *turns,
        ]

    def read(self, images: Sequence[Any], audio: Sequence[Any], features: bool = True) -> ReadAttachments:
        """The attachments through the adapters (when the profile has them and `features`), OCR and Whisper."""
        policy = self.pack.media if features else replace(self.pack.media, features=False)
        return read_attachments(self.platform, images, audio, policy)

    def user_turn(
        self, message: str, images: Sequence[Any] = (), audio: Sequence[Any] = (), features: bool = True
    ) -> tuple[str | list, list[dict], ReadAttachments]:
        """The user's content (adapter features, the message, fenced OCR text and transcripts), the trace
        steps that made it, and what was read."""
        read = self.read(images, audio, features)
        content = user_content(message, read, self.lang)
        trace = [{"step": step, "text": block} for step, block in evidence_blocks(read, self.lang).items() if block]
        if read.features:
            trace.append({"step": "features", "media": [f"{m.name}: {m.slots} slots" for m in read.features]})
        trace += [{"step": "note", "text": note} for note in read.notes]
        return content, trace, read

    def respond(
        self, message: str, history: Sequence[dict] = (), images: Sequence[Any] = (), audio: Sequence[Any] = ()
    ) -> ScenarioReply:
        """Answer `message`; `images` (PIL) and `audio` (16 kHz arrays) go in through the profile's adapters,
        with their OCR text and transcripts as fenced user material (see attachments.py)."""
        self.check_message(message, images, audio)
        content, trace, read = self.user_turn(message, images, audio)
        text = content[-1] if isinstance(content, list) else content
        conversation = validate_messages([*history, {"role": "user", "content": text}])
        conversation[-1]["content"] = content  # validated as text; the features go with it
        hits = self.retriever.search(message, lang=self.lang)
        trace.append({"step": "retrieve", "citations": [h.citation for h in hits]})
        messages = self.prompt(hits, conversation)
        self._check_fits(messages, text)
        calls: list[dict] = []
        for plan, call in run_planners(self.planners, self.tools, message, self.lang, attached_text=read.text):
            calls.append({**call.as_dict(), "source": "planner", "reason": plan.reason})
            trace.append({"step": "tool", **calls[-1]})
            messages += self._tool_turns(call)
        # Safety also reads what was attached (a voice note describing chest pain), as data to match.
        trigger = self.escalate_on.search(f"{message}\n{read.text}") if self.escalate_on else None
        if trigger:
            trace.append({"step": "escalate", "matched": trigger.group(0)})
        model_calls = 0
        while True:  # ends: a plain answer, or max_tool_rounds model calls made
            text = self._generate(messages)
            trace.append({"step": "generate", "text": text})
            parsed = parse_tool_call(text)
            if parsed is None or model_calls == self.max_tool_rounds:
                break
            model_calls += 1
            call = self._run_tool(*parsed)
            calls.append({**call.as_dict(), "source": "model"})
            trace.append({"step": "tool", **calls[-1]})
            messages += self._tool_turns(call)
        escalated = bool(trigger) or any((c["result"] or {}).get("escalate") is True for c in calls)
        answer = self._grounded(TOOL_CALL.sub("", text).strip(), conversation, hits, calls, message, trace)
        return ScenarioReply(
            answer=self._escalated(answer) if escalated else answer,
            citations=[
                {
                    "citation": h.citation,
                    "doc_id": h.doc_id,
                    "title": h.title,
                    "passage": h.passage,
                    "text": h.text,
                    "score": round(h.score, 4),
                }
                for h in hits
            ],
            tool_calls=calls,
            trace=trace,
            escalated=escalated,
        )

    def classify(
        self, message: str, images: Sequence[Any] = (), audio: Sequence[Any] = (), method: str = "lm"
    ) -> dict[str, dict]:
        """The pack's labels for one post: label set -> {"label", "probabilities"}; `method` is a key of
        LABEL_METHODS: "lm" scores each allowed label with the language model, "neighbours" is a vote of
        the most similar labelled training posts."""
        if not self.pack.labels:
            raise InputError(
                f"scenario {self.pack.name!r} has no `labels:` in scenario.yaml, so there is nothing to classify; "
                "use a classification scenario such as social_sentiment"
            )
        if method not in LABEL_METHODS:
            raise InputError(f"unknown label method {method!r}; choose one of {', '.join(LABEL_METHODS)}")
        self.check_message(message, images, audio)
        return LABEL_METHODS[method](self, message, images, audio)

    def check_message(self, message: str, images: Sequence[Any] = (), audio: Sequence[Any] = ()) -> None:
        """Refuse, before any work, a message with nothing to answer or label, or one over max_message_chars."""
        if not message.strip() and not (images or audio):
            raise InputError("the message is empty: write some text (or attach an image or a voice note)")
        if len(message) > self.max_message_chars:
            raise InputError(
                f"the message is {len(message):,} characters; scenario chat takes at most {self.max_message_chars:,} "
                f"(ScenarioAssistant.max_message_chars) so that the pack's prompt, the retrieved passages and the "
                f"reply fit the model's context: shorten it or send it in parts"
            )

    def _check_fits(self, messages: list[dict], content: str) -> None:
        """Refuse a turn whose own text (message, image text, transcripts) pushes the prompt past the model's
        context, which generation would otherwise overrun without a word. A model whose context cannot even
        hold the pack's prompt (the tiny test profile) is not refused here: only the message cap applies."""
        lm = self.platform.lm
        context = getattr(lm.model.config, "max_position_embeddings", None)
        if not context:
            return
        prompt = len(lm.chat_ids(render_messages(lm.tokenizer, self._template_safe(messages))[0]))
        own = len(lm.tokenizer(content, add_special_tokens=False)["input_ids"])
        reserved = prompt - own + self.options.max_new_tokens  # the pack's prompt, passages and the reply
        if prompt + self.options.max_new_tokens > context and reserved <= context:
            raise InputError(
                f"the message (with any image text and transcripts) is {own:,} tokens; the pack's prompt, the "
                f"passages and room for the reply take {reserved:,} of the model's {context:,}-token context, "
                f"leaving {context - reserved:,}: shorten the message or send it in parts"
            )

    def labels_by_lm(
        self, message: str, images: Sequence[Any], audio: Sequence[Any], read: ReadAttachments | None = None,
        given: Mapping[str, dict] | None = None,
    ) -> dict[str, dict]:  # fmt: skip
        """Label scores (label_scoring.py, the one scorer) after the prompt a chat turn gets (system prompt,
        guideline passages, few-shot), the nearest labelled posts as worked examples, then the post: its media
        through the adapters and its image text and transcripts fenced beside it. A set the pack hands to a
        trained scorer (`label_scorers:`) is labelled by it instead, or taken from `given` when the caller has
        scored it already. `read`: the attachments when the caller has read them already."""
        read = read if read is not None else self.read(images, audio)
        chosen = self.labels_by_trained_scorers(message, images, audio, read, given)
        by_words = {name: labels for name, labels in self.pack.labels.items() if name not in chosen}
        if by_words:
            content = user_content(message, read, self.lang)
            hits = self.retriever.search(message, lang=self.lang)
            messages = self.prompt(hits, [*self.similar_examples(message), {"role": "user", "content": content}])
            [scored] = score_conversations(self.platform, [messages], by_words)
            chosen |= {name: {"label": result["label"],
                              "probabilities": {label: round(p, 4) for label, p in result["probabilities"].items()}}
                       for name, result in scored.items()}  # fmt: skip
        return {name: chosen[name] for name in self.pack.labels}

    def labels_by_trained_scorers(
        self, message: str, images: Sequence[Any], audio: Sequence[Any], read: ReadAttachments | None = None,
        given: Mapping[str, dict] | None = None,
    ) -> dict[str, dict]:  # fmt: skip
        """The sets the pack hands to a trained scorer (`label_scorers:`), each from `given` when the caller has
        scored it already, else by its scorer; whichever label method runs, these sets are labelled so."""
        chosen = dict(given or {})
        missing = [name for name in self.pack.label_scorers if name not in chosen]
        if missing:
            read = read if read is not None else self.read(images, audio)
            for name in missing:
                scorer = SCORERS[self.pack.label_scorers[name]]
                chosen[name] = scorer(self.platform, message, images, audio, read, self.pack.labels[name])
        return chosen

    @cached_property
    def labelled_posts(self) -> tuple[list[tuple[str, str, dict[str, str]]], Any]:
        """(post, labelled JSON answer, its labels) in this language from the pack's fine-tune data, and
        the posts' embeddings: single-turn conversations whose answer states every label set."""
        posts = []
        for row in read_jsonl(self.pack, self.pack.finetune_data):
            turns = [m for m in row["messages"] if m["role"] != "system"]
            if row.get("lang") != self.lang or [m["role"] for m in turns] != ["user", "assistant"]:
                continue
            labels = labels_in_answer(turns[1]["content"], self.pack.labels)
            if len(labels) == len(self.pack.labels):
                posts.append((turns[0]["content"], turns[1]["content"], labels))
        vectors = self.platform.embedder.embed([post for post, _, _ in posts]) if posts else None
        return posts, vectors

    def nearest_posts(self, message: str, k: int) -> list[tuple[float, tuple[str, str, dict[str, str]]]]:
        """(cosine, labelled post) for the k labelled posts most like `message`, nearest first."""
        posts, vectors = self.labelled_posts
        if vectors is None or k < 1:
            return []
        top = (vectors @ self.platform.embedder.embed([message], query=True)[0]).topk(min(k, len(posts)))
        return [(weight, posts[index]) for weight, index in zip(top.values.tolist(), top.indices.tolist(), strict=True)]

    def labels_by_neighbours(self, message: str, images: Sequence[Any], audio: Sequence[Any]) -> dict[str, dict]:
        """Similarity-weighted vote of the `NEIGHBOURS` most similar labelled posts (post text only: the
        training posts' media are not embedded). Cheap, and stronger than a very small LM's scores. A set the
        pack hands to a trained scorer (`label_scorers:`) is labelled by it here too: the pack says that
        scorer reads the set best (social_sentiment's polarity: the sentiment pipeline 0.83, the vote 0.66)."""
        if not message.strip():
            raise InputError(
                "the neighbour vote compares the post's text, and this post has none: give its text with --message "
                "or use --label-method lm, which also reads the attached image text and transcripts"
            )
        nearest = self.nearest_posts(message, NEIGHBOURS)
        if not nearest:
            raise InputError(f"scenario {self.pack.name!r} has no labelled {self.lang} posts in its fine-tune data")
        chosen = self.labels_by_trained_scorers(message, images, audio)
        for name, labels in self.pack.labels.items():
            if name in chosen:
                continue
            votes = dict.fromkeys(labels, 0.0)
            for weight, (_, _, post_labels) in nearest:
                votes[post_labels[name]] += max(weight, 0.0)
            total = sum(votes.values()) or 1.0
            chosen[name] = {"label": max(votes, key=votes.get),
                            "probabilities": {label: round(v / total, 4) for label, v in votes.items()}}  # fmt: skip
        return {name: chosen[name] for name in self.pack.labels}

    def similar_examples(self, message: str) -> list[dict]:
        """The `demonstrations` labelled posts nearest to `message` (embedding cosine), as chat turns.

        Retrieved demonstrations let even a small model anchor its label scores on how this pack's
        annotators labelled similar posts; the nearest comes last, closest to the post."""
        nearest = self.nearest_posts(message, self.demonstrations)[::-1]
        return [turn for _, (post, answer, _) in nearest
                for turn in ({"role": "user", "content": post}, {"role": "assistant", "content": answer})]  # fmt: skip

    @cached_property
    def grounding_terms(self) -> tuple[str, ...]:
        return pack_terms(self.pack.root)

    def _grounded(
        self, answer: str, conversation: Sequence[dict], hits: Sequence[Any], calls: Sequence[dict], message: str,
        trace: list[dict],
    ) -> str:  # fmt: skip
        """The answer, each citation naming the passage that holds what it cites (`mend_citations`), followed
        by the evidence it leaves out (tool results it does not state, the passage sentences closest to the
        question it does not restate, cited), or, when it states a number, place or
        pack term that nothing it was shown contains or a verdict a tool's check contradicts ("不对" where
        check_answer found the student right), or when too few of its words were shown to it at all
        (UNGROUNDED_SHARE), an extractive fallback: that evidence alone (see grounding.py). Support: the
        system prompt with the passages, the user's turns (with attachment text), tool results. Not the
        few-shot examples or earlier answers: a number copied from an example is exactly the invention this
        guards against."""
        users = [m["content"] if isinstance(m["content"], str) else str(m["content"][-1])
                 for m in conversation if m["role"] == "user"]  # fmt: skip
        tools = [(c["name"], c["result"]) for c in calls if c.get("result")]
        results = [json.dumps(result, ensure_ascii=False) for _, result in tools]
        missing = unsupported(answer, [self.system_prompt(hits), *users, *results], self.grounding_terms)
        missing += contradicted_verdicts(answer, [result for _, result in tools])
        share = support_share(answer, [*(h.text for h in hits), *users, *results])
        ungrounded = share < UNGROUNDED_SHARE
        step = {"step": "grounding", "unsupported": [c.text for c in missing], "support": round(share, 3),
                "ungrounded": ungrounded, "fallback": bool(missing or ungrounded)}  # fmt: skip
        trace.append(step)
        if not self.grounding_guard:
            step["fallback"] = False
            return answer
        passages = [(h.text, h.citation) for h in hits]
        if step["fallback"]:
            given = fallback_answer(message, passages, self.lang, tools)
        else:
            mended, step["citations_mended"] = mend_citations(
                answer, passages, self.grounding_terms, [*users, *results]
            )
            given = with_evidence(mended, message, passages, self.lang, tools)
            step["evidence_added"] = given != mended
        if given != answer:
            step["model_answer"] = answer
        return given

    def _escalated(self, answer: str) -> str:
        """The escalation text first (once), then what the model said."""
        escalation = self.pack.safety.escalation[self.lang]
        return answer if answer.startswith(escalation) else f"{escalation}\n\n{answer}".strip()

    @staticmethod
    def _tool_turns(call: ToolCall) -> list[dict]:
        return [
            {"role": "assistant", "content": render_tool_call(call.name, call.arguments)},
            {"role": "observation", "content": call.observation()},
        ]

    def _run_tool(self, name: str, arguments: dict) -> ToolCall:
        if name not in self.tools:
            return ToolCall(name, arguments, None, f"unknown tool {name!r}; available: {sorted(self.tools)}", 0.0)
        return call_tool(self.tools[name], arguments)

    def _generate(self, messages: list[dict]) -> str:
        if has_media(messages):  # attached images/clips go in as adapter features, fused into the LM
            return multimodal_for(self.platform).generate_text(self._template_safe(messages), self.options).strip()
        lm = self.platform.lm
        ids = lm.chat_ids(self._template_safe(messages))
        return lm.tokenizer.decode(list(self._stream(ids)), skip_special_tokens=True).strip()

    def _stream(self, ids: list[int]) -> Iterator[int]:
        lm = self.platform.lm
        with text_turn(self.platform):
            yield from stream_tokens(lm.model, ids, lm.stop_token_ids, self.options)

    def _template_safe(self, messages: list[dict]) -> list[dict]:
        """Chat templates without an observation role get tool results as a user turn."""
        tokenizer = self.platform.lm.tokenizer
        if "observation" in (tokenizer.chat_template or "") or "<|observation|>" in tokenizer.get_vocab():
            return messages
        return [
            {"role": "user", "content": f"Tool result: {m['content']}"} if m["role"] == "observation" else m
            for m in messages
        ]


# The trained scorers a pack may name in `label_scorers:` (their labels: scenarios.schema.LABEL_SCORERS).
SCORERS: Mapping[str, Callable[..., dict]] = {"sentiment": label_for_pack}
NEIGHBOURS = 5  # k of the neighbour vote (no measured comparison of k is recorded: tune it with scenarios eval)
LABEL_METHODS: dict[str, Callable[..., dict[str, dict]]] = {
    "lm": ScenarioAssistant.labels_by_lm,
    "neighbours": ScenarioAssistant.labels_by_neighbours,
}


def labels_in_answer(answer: str, label_sets: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The allowed labels a generated JSON answer states ({"polarity": "negative", "intensity": 3, ...})."""
    match = re.search(r"\{.*?\}", answer, re.DOTALL)
    try:
        payload = json.loads(match.group(0)) if match else {}
    except json.JSONDecodeError:
        return {}
    if not isinstance(payload, dict):
        return {}
    found = {name: str(payload.get(name)).strip().lower() for name in label_sets}
    return {name: value for name, value in found.items() if value in label_sets[name]}


def scenario_assistant(platform: Platform, scenario: str, lang: str) -> ScenarioAssistant:
    return ScenarioAssistant(platform=platform, pack=load_pack(scenario), lang=lang)
