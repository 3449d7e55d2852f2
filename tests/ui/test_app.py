"""The Streamlit app driven headless through AppTest on the tiny profile (the offline profile only where its
shipped adapter manifests are what is shown: nothing is loaded for that)."""

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


def _app(page: str | None = None, profile: str = "tiny") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["polyglm_profile"] = profile
    at.run()
    if page:
        # AppTest.switch_page only knows file pages; ours are callables registered by url_path.
        pages = at._registered_pages.items()
        at._page_hash = next(h for h, info in pages if info.get("url_pathname") == page)
        at.run()
    assert not at.exception, at.exception
    return at


def _png_with_text(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    from polyglm.pipelines.adapter_data import font_path

    image = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(image).text(
        (20, 35), text, fill="black", font=ImageFont.truetype(str(font_path("DejaVuSans.ttf")), 36)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wav(seconds: float = 1.0, amplitude: float = 0.3) -> bytes:
    import soundfile

    t = np.arange(int(16_000 * seconds)) / 16_000
    buffer = io.BytesIO()
    soundfile.write(buffer, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16_000, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def read_spy(monkeypatch):
    """Every ReadAttachments the pipelines produce (plain chat and scenario turns), in order."""
    import polyglm.pipelines.chat as chat
    import polyglm.pipelines.scenario_chat as scenario_chat

    seen = []
    real = chat.read_attachments

    def spy(platform, images, audio, policy=None):
        seen.append(real(platform, images, audio, policy))
        return seen[-1]

    monkeypatch.setattr(chat, "read_attachments", spy)
    monkeypatch.setattr(scenario_chat, "read_attachments", spy)
    return seen


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "text") for e in at.get(kind))


# --- Assistants: the plain assistant ----------------------------------------------------------------


def test_plain_assistant_streams_a_reply_and_keeps_history(tiny_platform):
    at = _app()
    assert at.title[0].value == "Assistants"  # the default page
    assert at.selectbox(key="assistant").value == "plain" and not at.radio  # no language choice without a pack
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value.strip()
    at.chat_input[0].set_value("and again").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    history = at.session_state["assistant_history_plain_"]
    assert [t.content for t in history[::2]] == ["hello", "and again"]


def test_plain_assistant_reads_an_attached_image_and_shows_what_it_read(tiny_platform, read_spy):
    at = _app()
    at.chat_input[0].upload("sign.png", _png_with_text("OPEN LATE"), "image/png").set_value("What does it say?")
    at.run()
    assert not at.exception and not at.error, at.error
    assert len(read_spy) == 1 and read_spy[0].ocr[0].replace(" ", "").upper() == "OPENLATE"
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    user, reply = at.chat_message
    assert "sign.png" in user.caption[0].value
    assert "profile 'tiny' has no trained image adapter: text only" in reply.caption[0].value
    evidence = reply.expander[0]
    assert evidence.label == "Read from the attachments"
    assert "OPEN" in evidence.text[0].value and "IMAGE TEXT 1" in evidence.text[0].value


def test_a_recorded_voice_note_goes_with_the_next_message_then_the_recorder_empties(tiny_platform, read_spy):
    at = _app()
    at.audio_input(key="voice_0").upload("recording.wav", _wav())
    at.run()
    assert not read_spy  # recording alone sends nothing: it waits for the message
    at.chat_input[0].set_value("What did I say?").run()
    assert not at.exception and not at.error, at.error
    assert len(read_spy) == 1 and len(read_spy[0].transcripts) == 1  # the clip went through speech recognition
    assert "recording.wav" in at.chat_message[0].caption[0].value
    assert [w.key for w in at.audio_input] == ["voice_1"] and at.audio_input[0].value is None  # a fresh recorder
    at.chat_input[0].set_value("thanks").run()  # the next turn carries no attachment
    assert len(read_spy) == 1 and len(at.chat_message) == 4


# --- Assistants: scenario packs -------------------------------------------------------------------------

CHEST_PAIN = {"en": "I have crushing chest pain and I can't breathe", "zh": "我胸口痛，出冷汗，喘不上气"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_medical_turn_shows_escalation_disclaimer_citations_and_tool_calls(tiny_platform, lang):
    from polyglm.scenarios.loader import load_pack

    pack = load_pack("medical")
    at = _app()
    at.selectbox(key="assistant").set_value("medical").run()
    assert at.radio(key="assistant_lang_medical").options == ["中文 (zh)", "English (en)"]
    at.radio(key="assistant_lang_medical").set_value(lang).run()
    at.chat_input[0].set_value(CHEST_PAIN[lang]).run()
    assert not at.exception and not at.error, at.error
    reply = at.chat_message[1]
    assert reply.markdown[0].value.startswith(pack.safety.escalation[lang])  # the pack's hand-off text opens it
    assert reply.warning[0].value.startswith("Escalated: ")
    disclaimer = reply.info[0].value  # visible, not folded into the tool-call expander
    triage = at.session_state[f"assistant_history_medical_{lang}"][1].tool_calls[0]
    assert triage["name"] == "triage" and disclaimer == triage["result"]["disclaimer"]
    labels = [e.label for e in reply.expander]
    assert labels == ["Sources (4)", "Tool calls (1)"]
    sources = reply.expander[0].markdown
    assert len(sources) == 4 and all(s.value.startswith("**[") for s in sources)
    assert all(f"-{lang}" in s.value.split("]")[0] for s in sources)  # passages in the chosen language
    assert reply.expander[1].markdown[0].value.startswith("`triage(")
    # the conversation goes on, and the other language keeps its own history
    at.chat_input[0].set_value("What should I do while I wait?").run()
    assert not at.exception and [m.name for m in at.chat_message] == ["user", "assistant"] * 2


def test_switching_assistants_keeps_each_conversation(tiny_platform):
    at = _app()
    at.chat_input[0].set_value("hello").run()
    at.selectbox(key="assistant").set_value("customer_service").run()
    assert not at.chat_message  # a new assistant starts empty
    at.chat_input[0].set_value("Where is my order 12345?").run()
    assert not at.exception and not at.error, at.error
    assert [e.label.split(" (")[0] for e in at.chat_message[1].expander][:1] == ["Sources"]
    at.selectbox(key="assistant").set_value("plain").run()
    assert [m.markdown[0].value for m in at.chat_message][:1] == ["hello"]


# --- Assistants: bad input -------------------------------------------------------------------------


def test_an_empty_message_is_a_clear_warning_and_the_next_turn_works(tiny_platform):
    at = _app()
    at.chat_input[0].set_value("   ").run()
    assert not at.exception and not at.chat_message
    assert at.warning[0].value == "The message is empty: write some text."
    at.chat_input[0].upload("sign.png", _png_with_text("HI"), "image/png").set_value(" ").run()
    assert at.warning[0].value == "The message is empty: write some text to go with the attachment."
    at.chat_input[0].set_value("hello").run()
    assert not at.warning and [m.name for m in at.chat_message] == ["user", "assistant"]


@pytest.mark.parametrize(
    ("name", "data", "mime", "expected"),
    [
        ("report.png", b"%PDF-1.7 no image", "application/pdf", "report.png: the browser sent it as application/pdf"),
        ("photo.png", b"\x89PNG\r\n\x1a\n not really", "image/png", "photo.png"),  # a damaged file
        ("voice.wav", _png_with_text("X"), "audio/wav", "voice.wav"),  # a lying extension
    ],
)
def test_a_bad_upload_is_one_clear_error_and_the_app_stays_up(tiny_platform, name, data, mime, expected):
    at = _app()
    at.chat_input[0].upload(name, data, mime).set_value("What is this?").run()
    assert not at.exception
    assert expected in at.error[0].value, at.error[0].value
    assert at.session_state["assistant_history_plain_"] == []  # no half-answered turn is kept
    at.chat_input[0].set_value("hello").run()
    assert not at.exception and not at.error and [m.name for m in at.chat_message] == ["user", "assistant"]


def test_a_silent_recording_is_refused_with_the_fix(tiny_platform):
    at = _app()
    at.selectbox(key="assistant").set_value("customer_service").run()
    at.audio_input(key="voice_0").upload("recording.wav", _wav(amplitude=0.0))
    at.chat_input[0].set_value("listen").run()
    assert not at.exception
    assert "recording.wav contains only silence" in at.error[0].value and "record again" in at.error[0].value


@pytest.mark.parametrize("profile", ["glm4-9b"])
def test_missing_weights_are_explained_not_crashed(profile):
    at = _app(profile=profile)
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    assert "hf download THUDM/glm-4-9b-chat-hf" in at.error[0].value


# --- Models & training ----------------------------------------------------------------------------


def test_models_page_lists_parts_and_loads_them(tiny_platform):
    at = _app("models")
    assert at.title[0].value == "Models & training"
    parts = at.dataframe[0].value
    assert list(parts["part"]) == ["language_model", "vision", "speech", "embedding", "ocr"]
    assert parts["present"].all()
    compute = at.dataframe[1].value
    assert list(compute["job"]) == ["inference", "training"] and set(compute["dtype"]) <= {"float32", "bfloat16"}
    assert at.caption[0].value.startswith("cpu: ATen ")
    assert at.info[0].value.startswith("Profile `tiny` has no trained adapters")
    at.button[0].click().run()
    loaded = at.dataframe[2].value
    assert set(loaded["part"]) == {"language_model", "vision", "speech", "embedding", "ocr"}
    assert (loaded["load time (s)"] >= 0).all() and set(loaded["device"]) == {"cpu"}


def test_models_page_shows_the_profiles_adapters_and_their_manifests():
    """The offline profile's shipped adapters: read from their manifests, nothing is loaded."""
    import json

    from polyglm.platform.inventory import profile_status

    status = profile_status("offline")
    at = _app("models", profile="offline")
    adapters = at.dataframe[2].value
    assert list(adapters["adapter"]) == ["image", "audio", "image+audio (stage 2)"]
    assert adapters["present"].all()
    image = status.adapters[0]
    assert adapters["held_out_loss_after"][0] == image.metrics["held_out_loss_after"]
    manifests = [e for e in at.expander if e.label.startswith("Manifest: ")]
    assert [e.label for e in manifests] == ["Manifest: image", "Manifest: audio", "Manifest: image+audio (stage 2)"]
    shown = json.loads(manifests[0].json[0].value)
    assert shown == json.loads((Path(image.path) / "manifest.json").read_text())
    assert shown["modality"] == "image" and shown["spec"]


@pytest.fixture
def idle_slot():
    """The process's training slot, idle before and after the test (a failed test must not block the next)."""
    from polyglm.ui.models_page import training_slot

    slot = training_slot()
    yield slot
    if slot.job is not None and slot.job.running:
        slot.job.stop_event.set()
        deadline = time.monotonic() + 120
        while slot.job.running and time.monotonic() < deadline:
            time.sleep(0.2)


def _wait_for_training(at: AppTest, timeout: float = 240) -> list[str]:
    """Rerun the page (as the fragment does every second) until the job ends; the progress texts seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        seen += [p.proto.text for p in at.get("progress")]
        if at.success or at.error:
            return seen
        time.sleep(0.5)
    raise TimeoutError(f"training did not finish in {timeout} s; progress seen: {seen[-3:]}")


def _plotted(at: AppTest) -> list[tuple[float, float]]:
    """The (step, loss) points of the page's live loss chart."""
    import pyarrow as pa

    [chart] = at.get("vega_lite_chart")
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    return list(zip(table["step"], table["training loss"], strict=True))


def test_models_page_trains_a_tiny_adapter_with_a_live_loss_plot(tiny_platform, tmp_path, idle_slot):
    at = _app("models")
    out = tmp_path / "adapter"
    at.text_input(key="train_out_tiny_image").set_value(str(out))
    at.number_input(key="train_items").set_value(20)
    at.number_input(key="train_eval").set_value(2)
    at.button(key="start_adapter").click().run()
    assert not at.exception and not at.error, at.error
    assert at.button(key="start_adapter").disabled  # one training at a time
    seen = _wait_for_training(at)
    assert not at.error, at.error[0].value
    job = idle_slot.job
    assert job.phase == "done" and job.total == 2 and [s for s, _ in job.losses] == [1, 2]
    assert "step 2/2 · loss" in seen[-1] and at.success[0].value.startswith("image adapter on tiny: done in ")
    assert _plotted(at) == [(float(s), v) for s, v in job.losses]
    metrics = dict(zip(at.dataframe[-1].value["metric"], at.dataframe[-1].value["value"], strict=True))
    assert metrics["steps"] == "2" and float(metrics["held_out_loss_after"]) > 0
    assert (out / "manifest.json").is_file() and (out / "loss.png").is_file()
    assert at.image  # the pipeline's loss plot with the held-out loss before and after
    assert not at.button(key="start_adapter").disabled


def test_models_page_runs_a_tiny_scenario_finetune(tiny_platform, tmp_path, idle_slot):
    at = _app("models")
    at.radio(key="train_kind").set_value("Scenario fine-tune (LoRA)").run()
    at.selectbox(key="finetune_scenario").set_value("customer_service").run()
    at.number_input(key="finetune_items").set_value(12)
    at.number_input(key="finetune_tokens").set_value(128)
    at.text_input(key="finetune_out_tiny_customer_service").set_value(str(tmp_path / "lora"))
    at.button(key="start_finetune").click().run()
    _wait_for_training(at)
    assert not at.error, at.error[0].value
    assert at.success[0].value.startswith("customer_service LoRA on tiny: done in ")
    assert "make_default is off" in at.caption[-1].value  # the checkbox default: nothing becomes the default
    assert (tmp_path / "lora" / "manifest.json").is_file() and _plotted(at)


def test_a_wrong_training_setting_is_refused_before_anything_starts(tiny_platform, tmp_path, idle_slot):
    before = idle_slot.job
    at = _app("models")
    at.number_input(key="train_items").set_value(5)  # image: each of the five kinds holds out its first item
    at.text_input(key="train_out_tiny_image").set_value(str(tmp_path / "x"))
    at.button(key="start_adapter").click().run()
    assert not at.exception
    assert "--items 5 gives 0 training and 5 held-out image examples" in at.error[0].value, at.error[0].value
    assert idle_slot.job is before and not (tmp_path / "x").exists()


def test_a_shared_deployment_hides_training_and_load_all(tiny_platform, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--profile", "tiny", "--no-training", "--no-load-all"])
    at = _app("models")
    assert not at.button  # neither Load all parts nor any start button
    assert "switched off on this server (`--no-load-all`)" in _texts(at)
    assert at.info[-1].value == "Training is switched off on this server (`polyglm app --no-training`)."


@pytest.mark.parametrize("running_looks", [1, 2, 3, 4, 5])
def test_a_job_ending_while_the_page_draws_never_shows_results_beside_a_disabled_button(
    tiny_platform, idle_slot, running_looks
):
    """The job's end can fall anywhere while the page draws (between the start buttons, the live progress and
    the results); whichever look at `running` first sees it ended, the page must show either the live
    progress (buttons disabled) or the results (buttons enabled), never results beside disabled buttons."""
    from polyglm.ui.training import TrainingJob

    class EndsMidDraw(TrainingJob):
        looks = 0

        @property
        def running(self) -> bool:  # running for the first `running_looks` looks, finished after
            EndsMidDraw.looks += 1
            return EndsMidDraw.looks <= running_looks

    job = EndsMidDraw("adapter", "image adapter on tiny", "runs/none", phase="done", step=2, total=2,
                      losses=[(1, 2.0), (2, 1.0)], result={"steps": 2}, finished=time.time())  # fmt: skip
    idle_slot.job = job
    try:
        at = _app("models")
        for _ in range(3):  # this run, then the reruns the fragment would make
            assert not at.exception
            assert not (at.success and at.button(key="start_adapter").disabled)
            at.run()
        assert at.success and not at.button(key="start_adapter").disabled
    finally:
        idle_slot.job = None
