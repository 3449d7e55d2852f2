"""Batch evaluation: a manifest through `polyglm eval`'s runner, with progress, metrics, plots and the report.

Thin over polyglm/evaluation: the page picks the task (the runner's task registry; `scenario` once per
pack), the manifest and a row limit, and calls `run_eval` on the app's profile in a background thread
(one batch run per server process, like training), feeding st.progress from its `on_progress`. When it
ends: the headline metrics (report.headline), the report's own plots (report.plots), the failed items
with their reasons and downloads of report.html and predictions.jsonl.

Where manifests come from, and where files go:
- Uploaded: a CSV or JSONL file with the media files it names, saved under
  runs/app/batch/<session>/uploads/<content hash>/, each file by its base name and again at every
  relative path the manifest gives for it ("media/a.png"), so the rows resolve; the manifest reader keeps
  every path inside that folder. The same files uploaded again land in the same folder and the same run
  folder, so the runner resumes: items already predicted are not predicted again ("0 new").
- On the server: only CSV / JSONL files under ALLOWED_ROOTS (the repository's runs/ folder and the
  scenario packs), chosen from a list, never typed: no other path on the machine can be named.
A server started with `polyglm app --no-batch` shows the page without the run controls.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st
import yaml

from polyglm.evaluation.runner import PREDICTIONS, REPORT, RunOptions, RunResult, read_records, resolve_task, run_eval
from polyglm.evaluation.tasks import available_tasks
from polyglm.platform.errors import InputError, PolyglmError
from polyglm.platform.paths import resolve_inside
from polyglm.scenarios.loader import PACKS_DIR, list_packs
from polyglm.ui import PageSpec
from polyglm.ui.assistants_page import ATTACHABLE
from polyglm.ui.state import app_settings, current_platform, current_profile, show_error
from polyglm.ui.training import Elapsed

BATCH_ROOT = Path("runs") / "app" / "batch"  # per-session uploads and run folders (relative to the server's cwd)
ALLOWED_ROOTS = {"runs": Path("runs"), "packs": PACKS_DIR}  # where a manifest on the server may be picked from
MANIFEST_SUFFIXES = (".csv", ".jsonl")
NOT_MANIFESTS = {PREDICTIONS}  # JSONL files the runner writes
MAX_LISTED = 300  # server manifests offered, at most
SESSION_KEY = "batch_session"  # per browser session: names its folder under BATCH_ROOT
UPLOAD, SERVER = "Upload a manifest", "A manifest on this server"
UPLOADABLE = sorted({*ATTACHABLE, "csv", "jsonl"})


@dataclass
class BatchJob(Elapsed):
    """One run as the page shows it; written by the run's thread, read by the session that started it."""

    title: str  # e.g. "labels on data.csv (tiny)"
    options: RunOptions
    started: float = field(default_factory=time.time)
    done: int = 0  # items with a record (resumed ones included)
    total: int = 0  # items in the run; 0 until the first batch ends
    result: RunResult | None = None
    plots: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG) from report.plots
    error: str | None = None
    finished: float | None = None
    earlier: int = 0  # records already in the run folder when it started (a resumed run)

    def observe(self, done: int, total: int) -> None:
        self.done, self.total = done, total


class BatchRuns:
    """The server's batch runs: one at a time (they share the cached model); each session sees its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[str, BatchJob] = {}  # session -> its last job

    def running(self) -> BatchJob | None:
        return next((job for job in self.jobs.values() if job.running), None)

    def start(self, session: str, job: BatchJob, platform: Any) -> BatchJob:
        with self._lock:
            busy = self.running()
            if busy is not None:
                raise InputError(f"a batch run is already going on this server ({busy.title}, {busy.done}/"
                                 f"{busy.total or '?'} items); it runs one at a time: wait for it to end")  # fmt: skip
            self.jobs[session] = job
        threading.Thread(target=self._run, args=(job, platform), name="polyglm-batch", daemon=True).start()
        return job

    @staticmethod
    def _run(job: BatchJob, platform: Any) -> None:
        from polyglm.evaluation import report

        try:
            job.earlier = len(read_records(Path(job.options.out) / PREDICTIONS))
            result = run_eval(job.options, platform=platform, progress=False, on_progress=job.observe)
            job.done = job.total = result.items
            task = resolve_task(job.options)
            records = read_records(result.folder / PREDICTIONS)
            job.plots = [(caption, base64.b64decode(url.split(",", 1)[1]))
                         for caption, url in report.plots(task, result.metrics, records)]  # fmt: skip
            job.result = result
        except PolyglmError as exc:
            job.error = str(exc)
        except Exception as exc:  # the thread must record every failure, or the page waits forever
            job.error = f"internal error ({type(exc).__name__}): {exc}\n{traceback.format_exc(limit=8)}"
        finally:
            job.finished = time.time()


@st.cache_resource(show_spinner=False)
def batch_runs() -> BatchRuns:
    return BatchRuns()  # one per server process


def session_id() -> str:
    return st.session_state.setdefault(SESSION_KEY, uuid.uuid4().hex[:12])


# ---------------------------------------------------------------- choosing the task and the manifest


@st.cache_data(show_spinner=False, ttl=60)
def task_choices() -> list[str]:
    """Every task the runner knows; a task with a `parameter:` (scenario) once per pack."""
    choices = []
    for name, path in available_tasks().items():
        try:
            parameter = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("parameter")
        except (OSError, yaml.YAMLError):
            parameter = None
        choices += [f"{name}:{pack}" for pack in list_packs()] if parameter else [name]
    return choices


def server_manifests() -> dict[str, Path]:
    """'root/relative path' -> file, for the CSV / JSONL files under ALLOWED_ROOTS (not under BATCH_ROOT)."""
    found: dict[str, Path] = {}
    private = BATCH_ROOT.resolve()
    for label, root in ALLOWED_ROOTS.items():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in MANIFEST_SUFFIXES or path.name in NOT_MANIFESTS or not path.is_file():
                continue
            resolved = resolve_inside(root, path.relative_to(root))  # a symlink out of the root is not offered
            if resolved is None or resolved.is_relative_to(private):
                continue
            found[f"{label}/{path.relative_to(root).as_posix()}"] = resolved
            if len(found) >= MAX_LISTED:
                return found
    return found


def _digest(parts: list[tuple[str, bytes]]) -> str:
    sha = hashlib.sha256()
    for name, data in sorted(parts):
        sha.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return sha.hexdigest()[:12]


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    if not base or base.startswith(".") or not re.fullmatch(r"[\w\-. ()+@]+", base):
        raise InputError(f"{name!r}: not a usable file name; rename it to letters, digits, '-', '_' and '.'")
    return base


def save_upload(session: str, files: list[tuple[str, bytes]]) -> Path:
    """Write one manifest and its media into the session's upload folder; the manifest's path there."""
    manifests = [(n, d) for n, d in files if Path(n).suffix.lower() in MANIFEST_SUFFIXES]
    if len(manifests) != 1:
        got = f"got {len(manifests)}: {', '.join(n for n, _ in manifests)}" if manifests else "got none"
        raise InputError(f"upload exactly one manifest (a .csv or .jsonl file) with the media files it names; {got}")
    names = [_safe_name(n) for n, _ in files]
    if len(set(names)) != len(names):
        raise InputError("two uploaded files have the same name; rename one (media are matched by file name)")
    folder = BATCH_ROOT / session / "uploads" / _digest(list(zip(names, (d for _, d in files), strict=True)))
    folder.mkdir(parents=True, exist_ok=True)
    media = {}
    for name, (_, data) in zip(names, files, strict=True):
        (folder / name).write_bytes(data)
        if Path(name).suffix.lower() not in MANIFEST_SUFFIXES:
            media[name] = data
    manifest = folder / _safe_name(manifests[0][0])
    _place_media(folder, manifest.read_text(encoding="utf-8", errors="replace"), media)
    return manifest


def _place_media(folder: Path, text: str, media: dict[str, bytes]) -> None:
    """Copy each uploaded file to every relative path the manifest names for it ("media/a.png"), inside
    `folder` only: a path that would land outside is left to the manifest reader, which refuses that row."""
    if not media:
        return
    suffixes = "|".join(sorted({Path(n).suffix.lower().lstrip(".") for n in media}))
    for match in set(re.findall(rf"[^\s\",;\[\]{{}}]+\.(?:{suffixes})\b", text, flags=re.IGNORECASE)):
        relative = match.replace("\\/", "/")
        data = media.get(Path(relative).name)
        target = resolve_inside(folder, relative)
        if data is None or target is None or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _run_folder(session: str, profile: str, task: str, manifest: Path) -> Path:
    key = hashlib.sha256(f"{manifest.resolve()}\0".encode() + manifest.read_bytes()).hexdigest()[:12]
    safe_task = re.sub(r"[^\w.-]", "-", task)
    return BATCH_ROOT / session / "runs" / f"{profile}-{safe_task}-{key}"


# ---------------------------------------------------------------- the page


def _controls(runs: BatchRuns, session: str, running: BatchJob | None) -> None:
    profile = current_profile()
    task = st.selectbox("Task", task_choices(), key="batch_task",
                        help="what is predicted and scored (polyglm/evaluation/tasks/*.yaml)")  # fmt: skip
    source = st.radio("Manifest", [UPLOAD, SERVER], horizontal=True, key="batch_source")
    if source == UPLOAD:
        files = st.file_uploader("A CSV or JSONL manifest and the media files it names (select them together)",
                                 type=UPLOADABLE, accept_multiple_files=True, key="batch_files")  # fmt: skip
        picked = None
    else:
        listed = server_manifests()
        roots = ", ".join(f"{label}/ ({root})" for label, root in ALLOWED_ROOTS.items())
        picked = st.selectbox("Manifest on this server", list(listed), index=None, key="batch_server_manifest",
                              placeholder="choose a CSV or JSONL file", help=f"files under {roots} only")  # fmt: skip
        files = None
    limit = st.number_input("First N rows (0: all)", 0, 1_000_000, 0, key="batch_limit")
    busy = running is not None
    if running is not None:
        st.caption(f"A batch run is going on this server ({running.title}); the button comes back when it ends.")
    if not st.button("Run evaluation", type="primary", icon=":material/play_arrow:", disabled=busy, key="batch_start"):
        return
    if source == UPLOAD:
        if not files:
            raise InputError("nothing uploaded: add a CSV or JSONL manifest (and the media files it names)")
        manifest = save_upload(session, [(f.name, f.getvalue()) for f in files])
    else:
        if picked is None:
            raise InputError("choose a manifest from the list first")
        manifest = server_manifests().get(picked)  # listed again: the choice must still be under a root
        if manifest is None:
            raise InputError(f"{picked} is no longer on the server; choose another manifest")
    options = RunOptions(task=task, manifest=manifest, out=_run_folder(session, profile, task, manifest),
                         profile=profile, limit=int(limit) or None)  # fmt: skip
    resolve_task(options)  # an unknown or broken task is refused here, before the thread starts
    platform = current_platform()
    runs.start(session, BatchJob(f"{task} on {manifest.name} ({profile})", options), platform)
    st.rerun()  # redraw with the start button disabled and the live progress below


def _progress(job: BatchJob, running_when_drawn: bool) -> None:
    @st.fragment(run_every=1.0 if running_when_drawn else None)
    def live() -> None:
        if running_when_drawn and not job.running:
            st.rerun()  # the whole page: results and the enabled start button
        fraction = job.done / job.total if job.total else 0.0
        text = f"{job.done}/{job.total} items" if job.total else "reading the manifest, loading the model…"
        st.progress(min(fraction, 1.0), text=f"{job.title} · {text} · {job.seconds:,.0f} s")

    live()


def _results(job: BatchJob) -> None:
    if job.error:
        st.error(job.error, icon=":material/error:")
        return
    result = job.result
    if result is None:
        return
    st.success(f"{result.items} items, {result.failed} failed, {result.new} new in {job.seconds:,.1f} s · "
               f"`{result.folder}`", icon=":material/check_circle:")  # fmt: skip
    if job.earlier:
        st.caption(f"Resumed: {job.earlier} items were already in {PREDICTIONS} and were not predicted again.")
    from polyglm.evaluation.report import headline

    st.subheader("Metrics")
    numbers = headline(result.metrics)
    st.dataframe([{"metric": k, "value": None if v is None else round(float(v), 4)} for k, v in numbers.items()],
                 hide_index=True)  # fmt: skip
    latency = result.metrics.get("latency")
    if latency:
        st.caption(f"{latency['mean_s']:.3f} s per item on average, p95 {latency['p95_s']:.3f} s")
    if job.plots:
        st.subheader("Plots")
        columns = st.columns(2)
        for number, (caption, png) in enumerate(job.plots):
            columns[number % 2].image(png, caption=caption)
    failed = result.metrics.get("failed") or []
    st.subheader(f"Failed items ({len(failed)})")
    if failed:
        st.dataframe([{"id": f["id"], "reason": f["error"]} for f in failed], hide_index=True)
    else:
        st.caption("none")
    left, right = st.columns(2)
    for column, name, mime in ((left, REPORT, "text/html"), (right, PREDICTIONS, "application/jsonl")):
        path = result.folder / name
        if path.is_file():
            column.download_button(f"Download {name}", path.read_bytes(), file_name=name, mime=mime,
                                   icon=":material/download:", key=f"batch_download_{name}")  # fmt: skip


def render() -> None:
    st.title("Batch evaluation")
    st.caption(f"Profile `{current_profile()}` · a manifest (CSV or JSONL: text, image, audio, label or score "
               "columns) scored item by item; a bad row fails alone with its reason; running the same manifest "
               "again resumes.")  # fmt: skip
    if not app_settings().batch:
        st.info("Batch runs are switched off on this server (`polyglm app --no-batch`).", icon=":material/block:")
        return
    runs, session = batch_runs(), session_id()
    # One look at what is running, for the whole page: a run ending halfway through drawing must not leave
    # its results beside a start button drawn disabled (the fragment redraws the page when it sees the end).
    running = runs.running()
    try:
        _controls(runs, session, running)
    except PolyglmError as exc:
        show_error(exc)
    job = runs.jobs.get(session)
    if job is None:
        return
    _progress(job, running_when_drawn=running is job)
    if running is not job:
        _results(job)


PAGE = PageSpec(title="Batch evaluation", icon=":material/fact_check:", url_path="batch", order=30, render=render)
