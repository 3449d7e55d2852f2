"""The one training loop: resume to the same weights, safe checkpoints, clear errors."""

from __future__ import annotations

import pytest
import torch

from polyglm.platform.errors import InputError
from polyglm.platform.trainer import (
    Trainable,
    TrainerOptions,
    epoch_batches,
    make_fingerprint,
    read_checkpoint,
    train,
)

X = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
Y = X @ torch.arange(6.0) + 0.5


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    # dropout draws from the torch RNG every step: resuming must restore it to match an unbroken run
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))


def _run(model, checkpoint, crash_at: int | None = None, fingerprint: str = "a"):
    def loss_fn(batch):
        if crash_at is not None and len(calls) == crash_at:
            raise KeyboardInterrupt("killed")
        calls.append(batch)
        return torch.nn.functional.mse_loss(model(X[batch]).squeeze(-1), Y[batch])

    calls: list = []
    batches = epoch_batches(len(X), 8, epochs=4, seed=0)
    options = TrainerOptions(lr=1e-2, checkpoint_every=3)
    state = train(Trainable.of_modules({"m": model}), batches, loss_fn, options, checkpoint, fingerprint,
                  initial_extra=lambda: {"before": 1.5})  # fmt: skip
    return state, calls


def test_a_crashed_run_resumes_to_the_weights_of_an_unbroken_one(tmp_path):
    whole, _ = _run(_model(), tmp_path / "a.pt")
    broken = _model()
    with pytest.raises(KeyboardInterrupt):
        _run(broken, tmp_path / "b.pt", crash_at=10)  # checkpoints at 3, 6, 9: step 10 is lost and redone
    resumed_model = _model()  # a new process: fresh weights, the checkpoint restores them
    resumed, calls = _run(resumed_model, tmp_path / "b.pt")
    assert resumed.resumed_from == 9 and len(calls) == 20 - 9 and resumed.note == "resumed at step 9"
    assert resumed.extra == {"before": 1.5}
    assert [row[0] for row in resumed.losses] == list(range(1, 21)) and resumed.losses == whole.losses
    final = torch.load(tmp_path / "a.pt", weights_only=True)["trainable"]
    for name, value in resumed_model.state_dict().items():
        assert torch.equal(value, final[f"m.{name}"]), name
    assert whole.losses[-1][1] < whole.losses[0][1]  # it learns


def test_checkpoints_load_with_weights_only_and_other_options_start_over(tmp_path):
    _run(_model(), tmp_path / "c.pt")
    assert read_checkpoint(tmp_path / "c.pt", "a")[1] == "resumed at step 20"
    assert read_checkpoint(tmp_path / "c.pt", "b") == (None, "ignored: made with other options, data or model")
    state, calls = _run(_model(), tmp_path / "c.pt", fingerprint="b")
    assert state.resumed_from is None and len(calls) == 20
    assert make_fingerprint(lr=1e-3, data="x") != make_fingerprint(lr=2e-3, data="x")


def test_a_corrupt_checkpoint_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "bad.pt"
    _run(_model(), path)
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.raises(InputError, match=r"bad\.pt cannot be read safely .*delete it to train from the start"):
        _run(_model(), path)


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": 1, "payload": Boom()}, path)
    with pytest.raises(InputError, match="it references the Python object print"):
        read_checkpoint(path, "a")


def test_an_observer_sees_every_step_and_can_stop_the_run(tmp_path):
    from polyglm.platform.trainer import observed

    class Stop(Exception):
        pass

    seen: list[tuple[int, int, int]] = []
    stop_at = [7]

    def watch(state, total):
        seen.append((state.step, len(state.losses), total))
        if state.step in stop_at:
            stop_at.clear()
            raise Stop

    with observed(watch), pytest.raises(Stop):
        _run(_model(), tmp_path / "o.pt")
    assert seen == [(step, step, 20) for step in range(8)]  # once at the start, then after each step
    seen.clear()
    with observed(watch):
        _run(_model(), tmp_path / "o.pt")  # resumes from the checkpoint at step 6; step 7 is redone
    assert seen[0] == (6, 6, 20) and seen[-1] == (20, 20, 20) and len(seen) == 15
    seen.clear()
    _run(_model(), tmp_path / "p.pt")  # outside the block: nobody is called
    assert seen == []
