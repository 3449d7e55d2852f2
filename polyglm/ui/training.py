"""Training from the app: one job at a time per server process, in a background thread.

The page starts a job and returns at once; the thread runs the pipeline (train_adapter or
finetune_scenario, each on its own Platform, so the cached one that answers chats is never cast or
given a LoRA) inside `trainer.observed`, which hands every step's loss to the job. Pages read the job
(a fragment polls it), so a training never blocks a page, and every browser session sees the same
job. Stop asks the loop to end at the next step; the checkpoint on disk lets the same settings resume.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polyglm.platform import trainer
from polyglm.platform.errors import InputError, PolyglmError


class StopRequested(Exception):
    """Raised inside the training loop when someone pressed Stop."""


class Elapsed:
    """`running` and `seconds` of a background job with `started` and `finished` (None while it runs)."""

    started: float
    finished: float | None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started


@dataclass
class TrainingJob(Elapsed):
    """What a page shows about a job; written by the training thread, read by any session."""

    kind: str  # "adapter" or "finetune"
    title: str  # e.g. "image adapter on tiny"
    out_dir: str  # where the checkpoint, loss.png and manifest go
    started: float = field(default_factory=time.time)
    phase: str = "preparing data and models"  # then "training", "scoring and saving", "done", "failed", "stopped"
    step: int = 0  # optimizer steps done (a resumed run starts above 0)
    total: int = 0  # steps in the whole run; 0 until the loop starts
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    result: dict[str, Any] | None = None  # the pipeline's return value (metrics or manifest)
    error: str | None = None  # why it failed
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def observe(self, state: trainer.RunState, total: int) -> None:
        """trainer.observed's callback: runs in the training thread after a resume and after each step."""
        if self.stop_event.is_set():
            raise StopRequested
        self.losses = [(int(s), float(v)) for s, v in state.losses]  # a new list: readers never see it half-built
        self.step, self.total = state.step, total
        self.phase = "training" if state.step < total else "scoring and saving"


class TrainingSlot:
    """The process's one training slot: start refuses while a job runs; the last job stays for its results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None

    def start(self, job: TrainingJob, work: Callable[[], dict]) -> TrainingJob:
        with self._lock:
            if self.job is not None and self.job.running:
                raise InputError(
                    f"a training is already running ({self.job.title}, step {self.job.step}/{self.job.total or '?'}); "
                    "this server trains one at a time: wait for it or stop it"
                )
            self.job = job
        thread = threading.Thread(target=self._run, args=(job, work), name=f"polyglm-train-{job.kind}", daemon=True)
        thread.start()
        return job

    @staticmethod
    def _run(job: TrainingJob, work: Callable[[], dict]) -> None:
        try:
            with trainer.observed(job.observe):
                job.result = work()
            job.phase = "done"
        except StopRequested:
            job.phase = "stopped"
            job.error = f"stopped at step {job.step}; start it again with the same settings to resume"
        except PolyglmError as exc:
            job.phase, job.error = "failed", str(exc)
        except Exception as exc:  # the thread must record every failure, or the page waits forever
            job.phase = "failed"
            job.error = f"internal error ({type(exc).__name__}): {exc}\n{traceback.format_exc(limit=8)}"
        finally:
            job.finished = time.time()
