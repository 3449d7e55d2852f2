"""The app's training slot: one job per process, live losses through trainer.observed, stop, failures kept."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from polyglm.platform import trainer
from polyglm.platform.errors import InputError
from polyglm.ui.training import TrainingJob, TrainingSlot


def _wait(job: TrainingJob, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while job.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job.running, job


def _tiny_training(tmp_path, gate: threading.Event | None = None):
    """A real trainer.train run of 6 steps; `gate` holds each step until set."""

    def work() -> dict:
        model = torch.nn.Linear(2, 1)
        x, y = torch.ones(4, 2), torch.zeros(4)

        def loss_fn(batch):
            if gate is not None:
                gate.wait(10)
            return ((model(x[batch]).squeeze(-1) - y[batch]) ** 2).mean()

        state = trainer.train(trainer.Trainable.of_modules({"m": model}), [[0, 1], [2, 3]] * 3, loss_fn,
                              trainer.TrainerOptions(lr=0.1), tmp_path / "c.pt", "f")  # fmt: skip
        return {"steps": state.step}

    return work


def test_a_job_records_every_loss_and_its_result(tmp_path):
    slot = TrainingSlot()
    job = slot.start(TrainingJob("adapter", "test", str(tmp_path)), _tiny_training(tmp_path))
    _wait(job)
    assert job.phase == "done" and job.result == {"steps": 6} and job.error is None
    assert job.step == job.total == 6 and [s for s, _ in job.losses] == [1, 2, 3, 4, 5, 6]


def test_one_training_at_a_time_and_stop_ends_it_at_the_next_step(tmp_path):
    slot, gate = TrainingSlot(), threading.Event()
    job = slot.start(TrainingJob("adapter", "first", str(tmp_path)), _tiny_training(tmp_path, gate))
    with pytest.raises(InputError, match="a training is already running \\(first, step 0/"):
        slot.start(TrainingJob("finetune", "second", str(tmp_path)), lambda: {})
    assert slot.job is job
    job.stop_event.set()
    gate.set()
    _wait(job)
    assert job.phase == "stopped" and "start it again with the same settings to resume" in job.error
    assert job.step < 6
    again = slot.start(TrainingJob("adapter", "again", str(tmp_path)), _tiny_training(tmp_path))  # free again
    _wait(again)
    assert again.phase == "done" and [s for s, _ in again.losses] == [1, 2, 3, 4, 5, 6]


def test_a_failure_is_kept_with_its_message(tmp_path):
    def broken() -> dict:
        raise RuntimeError("disk full")

    slot = TrainingSlot()
    job = slot.start(TrainingJob("adapter", "broken", str(tmp_path)), broken)
    _wait(job)
    assert job.phase == "failed" and job.error.startswith("internal error (RuntimeError): disk full")
    user = slot.start(TrainingJob("adapter", "bad", str(tmp_path)), lambda: (_ for _ in ()).throw(InputError("bad lr")))
    _wait(user)
    assert user.phase == "failed" and user.error == "bad lr"
