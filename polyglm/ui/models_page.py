"""Models & training: what the profile holds and what is loaded; its adapters and their manifests; training.

Training (a stage-1 adapter or a scenario LoRA fine-tune) runs in the background (ui/training.py), one
job per server process; a fragment redraws its progress and loss curve every second, so the page and
every other session stay usable. The defaults are small (a minute or two on a CPU), and a server started
with `polyglm app --no-training` / `--no-load-all` shows neither the training controls nor the button
that loads every part.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from polyglm.platform.config import PART_ROLES
from polyglm.platform.errors import PolyglmError
from polyglm.platform.inventory import STAGE2_MANIFEST, AdapterStatus, ProfileStatus, profile_status
from polyglm.scenarios.loader import list_packs
from polyglm.ui import PageSpec
from polyglm.ui.state import app_settings, current_platform, current_profile, show_error
from polyglm.ui.training import TrainingJob, TrainingSlot

ADAPTER_KIND = "Adapter (stage 1: projector)"
FINETUNE_KIND = "Scenario fine-tune (LoRA)"
SHOWN_METRICS = ("held_out_loss_before", "held_out_loss_after", "wer", "caption_accuracy", "steps", "lm_dtype")


@st.cache_resource(show_spinner=False)
def training_slot() -> TrainingSlot:
    return TrainingSlot()  # one per server process: every session sees the same job


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 1e6


def _parts(status: ProfileStatus) -> None:
    st.subheader(f"Profile `{status.name}` — {status.title}")
    st.dataframe(
        [
            {
                "part": p.role,
                "kind": p.kind,
                "source": p.source,
                "present": p.present,
                "size (MB)": round(p.bytes / 1e6, 1),
                "licence": p.licence,
            }
            for p in status.parts
        ],
        hide_index=True,
    )
    for part in status.parts:
        if part.problem:
            st.warning(part.problem)
    st.subheader("Compute")
    st.caption(status.compute["hardware"])
    st.dataframe(
        [{"job": job, "dtype": d["dtype"], "why": d["reason"]} for job, d in status.compute["dtypes"].items()],
        hide_index=True,
    )


def _manifest(adapter: AdapterStatus) -> dict:
    for name in ("manifest.json", STAGE2_MANIFEST):
        path = Path(adapter.path) / name
        if path.is_file():
            return json.loads(path.read_text())
    return {}


def _adapters(status: ProfileStatus) -> None:
    st.subheader("Adapters")
    adapters = [*status.adapters, *([status.stage2] if status.stage2 else [])]
    if not adapters:
        st.info(
            f"Profile `{status.name}` has no trained adapters: attached images and voice notes reach the model as "
            "OCR text and transcripts only. Train one below, or with `polyglm train-adapter`."
        )
        return
    st.dataframe(
        [
            {
                "adapter": a.modality,
                "present": a.present,
                "folder": os.path.relpath(a.path, Path.cwd()) if a.path.startswith(str(Path.cwd())) else a.path,
                **{k: a.metrics[k] for k in SHOWN_METRICS if k in a.metrics},
            }
            for a in adapters
        ],
        hide_index=True,
    )
    for adapter in adapters:
        if adapter.present:
            with st.expander(f"Manifest: {adapter.modality}", icon=":material/description:"):
                st.json(_manifest(adapter), expanded=1)
        else:
            st.warning(f"The {adapter.modality} adapter named by the profile is missing: {adapter.path}")


def _load_all(status: ProfileStatus) -> None:
    platform = current_platform()
    if not app_settings().load_all:
        st.caption("Loading every part at once is switched off on this server (`--no-load-all`); parts load on "
                   "first use.")  # fmt: skip
    elif st.button("Load all parts", icon=":material/download:", disabled=not status.ready):
        progress = st.progress(0.0, text="loading…")
        roles = [r for r in PART_ROLES if r in platform.profile.parts]
        for done, role in enumerate(roles, start=1):
            try:
                platform.get(role)
            except (PolyglmError, OSError) as exc:
                show_error(exc)
                break
            progress.progress(done / len(roles), text=f"loaded {role}")
    st.subheader("Loaded")
    if not platform.stats:
        st.info("Nothing loaded yet: parts load on first use (send a chat message, or press Load all parts).")
    else:
        st.dataframe(
            [
                {
                    "part": s.role,
                    "model": os.path.basename(s.path),
                    "parameters (M)": round(s.parameters / 1e6, 2),
                    "device": s.device,
                    "dtype": s.dtype,
                    "load time (s)": round(s.seconds, 2),
                }
                for s in platform.stats.values()
            ],
            hide_index=True,
        )
    st.metric("Server process memory (RSS)", f"{_rss_mb():,.0f} MB")


def _adapter_job(profile: str, busy: bool) -> tuple[TrainingJob, object] | None:
    from polyglm.pipelines.train_adapter import TrainOptions, check_options, train_adapter

    modality = st.selectbox("Modality", ["image", "audio"], key="train_modality")
    left, middle, right = st.columns(3)
    items = left.number_input("Examples to generate", 1, 5000, 40, step=10, key="train_items",
                              help="index % 10 == 0 is held out; hundreds for a useful adapter")  # fmt: skip
    epochs = middle.number_input("Epochs", 1, 50, 1, key="train_epochs")
    batch = right.number_input("Batch size", 1, 64, 8, key="train_batch")
    lr = left.number_input("Learning rate", 1e-5, 1e-1, 1e-3, format="%.5f", key="train_lr")
    scored = middle.number_input("Held-out items scored by generation", 0, 200, 4, key="train_eval")
    out = st.text_input("Output folder", f"runs/app/{profile}-{modality}", key=f"train_out_{profile}_{modality}")
    if not st.button("Start adapter training", icon=":material/model_training:", disabled=busy, key="start_adapter"):
        return None
    options = TrainOptions(profile=profile, modality=modality, items=int(items), epochs=int(epochs),
                           batch_size=int(batch), lr=float(lr), eval_generate=int(scored),
                           out_dir=Path(out))  # fmt: skip
    check_options(options)  # a wrong setting is refused here, before the thread starts
    job = TrainingJob("adapter", f"{modality} adapter on {profile}", out)
    return job, lambda: train_adapter(options)


def _finetune_job(profile: str, busy: bool) -> tuple[TrainingJob, object] | None:
    from polyglm.pipelines.finetune import FinetuneOptions, finetune_scenario

    scenario = st.selectbox("Scenario pack", list_packs(), key="finetune_scenario")
    left, middle, right = st.columns(3)
    max_items = left.number_input("Conversations (first N)", 2, 100_000, 24, key="finetune_items")
    epochs = middle.number_input("Epochs", 1, 20, 1, key="finetune_epochs")
    batch = right.number_input("Batch size", 1, 64, 4, key="finetune_batch")
    max_tokens = left.number_input("Tokens per row", 16, 8192, 256, step=64, key="finetune_tokens")
    rank = middle.number_input("LoRA rank", 1, 256, 8, key="finetune_rank")
    lr = right.number_input("Learning rate", 1e-6, 1e-1, 2e-4, format="%.5f", key="finetune_lr")
    make_default = st.checkbox("Make it the scenario's default LoRA if the forgetting guard allows", False,
                               key="finetune_default")  # fmt: skip
    out = st.text_input("Output folder", f"runs/app/finetune-{profile}-{scenario}",
                        key=f"finetune_out_{profile}_{scenario}")  # fmt: skip
    if not st.button("Start fine-tune", icon=":material/model_training:", disabled=busy, key="start_finetune"):
        return None
    options = FinetuneOptions(scenario=scenario, profile=profile, epochs=int(epochs), batch_size=int(batch),
                              lr=float(lr), lora_rank=int(rank), max_items=int(max_items), max_tokens=int(max_tokens),
                              make_default=make_default, out_dir=Path(out))  # fmt: skip
    job = TrainingJob("finetune", f"{scenario} LoRA on {profile}", out)
    return job, lambda: finetune_scenario(options)


def _training(status: ProfileStatus) -> None:
    st.subheader("Training")
    if not app_settings().training:
        st.info("Training is switched off on this server (`polyglm app --no-training`).", icon=":material/block:")
        return
    slot = training_slot()
    busy = slot.job is not None and slot.job.running
    if not status.ready:
        st.warning(f"Profile `{status.name}` is missing parts (see above): prepare it before training.")
    else:
        kind = st.radio("What to train", [ADAPTER_KIND, FINETUNE_KIND], horizontal=True, key="train_kind")
        try:
            started = (_adapter_job if kind == ADAPTER_KIND else _finetune_job)(status.name, busy)
            if started:
                slot.start(*started)
                st.rerun()  # redraw with the start buttons disabled and the live progress below
        except PolyglmError as exc:
            show_error(exc)
    if slot.job is not None:
        # `busy` is this page run's one look at the job: a job ending halfway through drawing must not leave
        # its results beside start buttons drawn disabled (the fragment redraws the page when it sees the end).
        _progress(slot, running_when_drawn=busy)


def _progress(slot: TrainingSlot, running_when_drawn: bool) -> None:
    @st.fragment(run_every=1.0 if running_when_drawn else None)
    def live() -> None:
        job = slot.job
        if job is None:
            return
        if running_when_drawn and not job.running:
            st.rerun()  # the whole page: results, the enabled start buttons
        st.markdown(f"**{job.title}** · {job.phase} · {job.seconds:,.0f} s · `{job.out_dir}`")
        fraction = job.step / job.total if job.total else 0.0
        last = f" · loss {job.losses[-1][1]:.3f}" if job.losses else ""
        st.progress(fraction, text=f"step {job.step}/{job.total or '?'}{last}")
        if job.losses:
            st.line_chart({"step": [s for s, _ in job.losses], "training loss": [v for _, v in job.losses]},
                          x="step", y="training loss", height=260)  # fmt: skip
        if job.running and st.button("Stop", icon=":material/stop:", key="stop_training"):
            job.stop_event.set()

    live()
    job = slot.job
    if job is None or running_when_drawn:
        return
    if job.error:
        (st.warning if job.phase == "stopped" else st.error)(job.error)
        return
    st.success(f"{job.title}: done in {job.seconds:,.0f} s; saved in `{job.out_dir}`", icon=":material/check_circle:")
    result = job.result or {}
    metrics = result.get("metrics", result)
    st.dataframe([{"metric": k, "value": str(v)} for k, v in metrics.items() if not isinstance(v, (dict, list))],
                 hide_index=True)  # fmt: skip
    plot = Path(job.out_dir) / "loss.png"
    if plot.is_file():
        st.image(str(plot), caption="training loss with the held-out loss before and after")
    if job.kind == "finetune":
        st.caption(result.get("reason", ""))


def render() -> None:
    st.title("Models & training")
    status = profile_status(current_profile())
    _parts(status)
    _adapters(status)
    _load_all(status)
    _training(status)


PAGE = PageSpec(title="Models & training", icon=":material/memory:", url_path="models", order=90, render=render)
