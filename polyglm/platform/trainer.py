"""The one training loop: adapter stage 1 and 2, scenario fine-tunes and the assistant fine-tune.

A job hands over what it trains (a `Trainable`), the fixed batch schedule and a loss function; the
loop does the rest the same way for all of them: AdamW, gradient clipping, a tqdm bar, atomic
checkpoints that `torch.load(weights_only=True)` can read, resume after a kill (SIGKILL included) to
the same weights an uninterrupted run reaches, and the loss curve. What is trained, on what and in
which dtype stays with the job.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from polyglm.platform.errors import InputError

CHECKPOINT_FORMAT = 1
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TrainerOptions:
    lr: float  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    clip_norm: float = 1.0  # gradients are clipped to this global L2 norm before each step
    checkpoint_every: int = 25  # optimizer steps between checkpoints; the last step always saves
    desc: str = "train"  # tqdm label


@dataclass(frozen=True)
class Trainable:
    """What a job trains: its parameters and how to save and restore exactly those weights."""

    parameters: list[torch.nn.Parameter]
    state_dict: Callable[[], dict[str, torch.Tensor]]
    load_state_dict: Callable[[Mapping[str, torch.Tensor]], object]

    @classmethod
    def of_modules(cls, modules: Mapping[str, torch.nn.Module]) -> Trainable:
        """All parameters of some small modules (projectors), saved under `name.` prefixes."""

        def state() -> dict[str, torch.Tensor]:
            return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}

        def load(saved: Mapping[str, torch.Tensor]) -> None:
            for name, module in modules.items():
                prefix = f"{name}."
                module.load_state_dict({k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)})

        parameters = [p for m in modules.values() for p in m.parameters()]
        return cls(parameters, state, load)

    @classmethod
    def of_lora(cls, peft_model, modules: Mapping[str, torch.nn.Module] | None = None) -> Trainable:
        """A peft model's trainable LoRA weights, plus optional small modules trained beside them."""
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        extra = cls.of_modules(modules or {})

        def state() -> dict[str, torch.Tensor]:
            return {**{f"lora.{k}": v for k, v in get_peft_model_state_dict(peft_model).items()}, **extra.state_dict()}

        def load(saved: Mapping[str, torch.Tensor]) -> None:
            set_peft_model_state_dict(peft_model, {k[5:]: v for k, v in saved.items() if k.startswith("lora.")})
            extra.load_state_dict({k: v for k, v in saved.items() if not k.startswith("lora.")})

        parameters = [p for p in peft_model.parameters() if p.requires_grad] + extra.parameters
        return cls(parameters, state, load)


@dataclass
class RunState:
    step: int = 0  # optimizer steps done, over all runs of this job
    losses: list[list] = field(default_factory=list)  # [step, train loss] per step
    extra: dict = field(default_factory=dict)  # job values that must survive a resume (e.g. the loss before)
    resumed_from: int | None = None  # step the checkpoint held when this run started, None when fresh
    seconds_this_run: float = 0.0
    note: str = "none"  # what happened to a checkpoint found at the start

    @property
    def steps_this_run(self) -> int:
        return self.step - (self.resumed_from or 0)


# Who watches the loop in this thread (the app's live loss plot): called with the state and the total step
# count after a resume and after every step. An exception it raises stops training (the checkpoint on disk
# lets a rerun resume). Jobs need not pass it along: whoever starts a job wraps the call in `observed`.
_OBSERVER: ContextVar[Callable[[RunState, int], None] | None] = ContextVar("polyglm_train_observer", default=None)


@contextmanager
def observed(callback: Callable[[RunState, int], None]) -> Iterator[None]:
    """Call `callback(state, total_steps)` from every `train` run inside this block (this thread only)."""
    token = _OBSERVER.set(callback)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def epoch_batches(n_items: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """All batches of all epochs, fixed by the seed, so a resumed run continues the same order."""
    rng, batches = random.Random(seed), []
    for _ in range(epochs):
        order = list(range(n_items))
        rng.shuffle(order)
        batches += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return batches


def make_fingerprint(**facts) -> str:
    """What a checkpoint must match to be resumed: everything that changes the training trajectory."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(path: Path, trainable: Trainable, optimizer, state: RunState, fingerprint: str) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "trainable": {k: v.detach().clone() for k, v in trainable.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "step": state.step,
        "losses": [list(row) for row in state.losses],
        "extra": state.extra,
        "rng": torch.get_rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a kill leaves the old checkpoint or the new one, never half of one


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, read weights-only on the CPU.

    A full unpickle runs whatever code a planted, copied or downloaded checkpoint carries; weights-only
    loading accepts tensors, numbers, strings and containers, which is all a polyglm checkpoint holds."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip or a pickle with objects: the fix is the same
        raise InputError(
            f"checkpoint {path} cannot be read safely ({_reason(exc)}): it is damaged or holds more than weights, "
            f"which polyglm does not unpickle; delete it to train from the start"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a polyglm training checkpoint; delete it to train from the start")
    return checkpoint


def _reason(exc: Exception) -> str:
    """torch's reason in one plain line: its weights-only message spans lines and carries terminal colours."""
    found = _UNSUPPORTED_GLOBAL.search(str(exc))
    if found:
        return f"it references the Python object {found.group(1)}"
    plain = " ".join(_TERMINAL_COLOURS.sub("", str(exc)).split())
    return f"{type(exc).__name__}: {plain[:160]}"


def read_checkpoint(path: Path, fingerprint: str) -> tuple[dict | None, str]:
    """(checkpoint, note). A checkpoint of other options/data/model is ignored and later overwritten."""
    if not path.is_file():
        return None, "none"
    checkpoint = load_checkpoint(path)
    if checkpoint.get("fingerprint") != fingerprint:
        return None, "ignored: made with other options, data or model"
    return checkpoint, f"resumed at step {checkpoint['step']}"


def train(
    trainable: Trainable,
    batches: Sequence[Sequence[int]],
    loss_fn: Callable[[Sequence[int]], torch.Tensor],
    options: TrainerOptions,
    checkpoint: Path,
    fingerprint: str,
    initial_extra: Callable[[], dict] | None = None,
) -> RunState:
    """Run `batches` through `loss_fn`, resuming from `checkpoint` when its fingerprint matches.

    `initial_extra` is called only on a fresh start; its values are saved with every checkpoint and
    come back in `RunState.extra` (e.g. a held-out loss measured before training).
    """
    saved, note = read_checkpoint(checkpoint, fingerprint)
    optimizer = torch.optim.AdamW(trainable.parameters, lr=options.lr, weight_decay=options.weight_decay)
    state = RunState(note=note)
    if saved is not None:
        trainable.load_state_dict(saved["trainable"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state.step, state.losses, state.extra = saved["step"], list(saved["losses"]), dict(saved["extra"])
        state.resumed_from = state.step
    else:
        state.extra = dict(initial_extra() if initial_extra else {})
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, trainable, optimizer, state, fingerprint)
    observer = _OBSERVER.get()
    if observer:
        observer(state, len(batches))
    started = time.perf_counter()
    bar = tqdm(range(state.step, len(batches)), initial=state.step, total=len(batches), desc=options.desc, unit="step")
    for step in bar:
        loss = loss_fn(batches[step])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable.parameters, options.clip_norm)
        optimizer.step()
        state.step = step + 1
        state.losses.append([state.step, round(loss.item(), 4)])
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if state.step % options.checkpoint_every == 0 or state.step == len(batches):
            save_checkpoint(checkpoint, trainable, optimizer, state, fingerprint)
        if observer:
            observer(state, len(batches))
    state.seconds_this_run = time.perf_counter() - started
    return state


def plot_losses(losses: Iterable, before: float, after: float, path: Path, title: str) -> None:
    """The training loss per step with the held-out loss before and after as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rows = [tuple(row) for row in losses]
    steps, values = zip(*rows, strict=True) if rows else ((), ())
    ax.plot(steps, values, label="train loss (per batch)", alpha=0.6)
    ax.axhline(before, color="grey", linestyle="--", label=f"held-out before {before:.2f}")
    ax.axhline(after, color="green", linestyle="--", label=f"held-out after {after:.2f}")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
