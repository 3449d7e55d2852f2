"""Bounds on what users hand in: uploaded audio has a byte cap before it touches the disk, file names that
look like ffmpeg options stay file names, and checkpoints are read without running pickled code."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from polyglm.platform import media
from polyglm.platform.errors import InputError
from polyglm.platform.media import MediaLimits, audio_duration, load_audio

needs_ffmpeg = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("ffmpeg", "ffprobe")), reason="needs the Debian ffmpeg binaries"
)


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- audio byte cap


@pytest.fixture
def no_disk(monkeypatch):
    """Fail the test if an upload is written to a temporary file or ffmpeg is started."""

    def refuse(*args, **kwargs):
        raise AssertionError("the upload reached the disk / ffmpeg before its size was checked")

    monkeypatch.setattr(media, "_on_disk", refuse)
    monkeypatch.setattr(media, "_tool", refuse)


def test_uploaded_audio_over_the_byte_cap_is_refused_before_it_is_written(tmp_path, no_disk):
    data = tone_wav(tmp_path / "note.wav").read_bytes()  # 32 kB of valid audio
    limits = MediaLimits(max_audio_bytes=10_000)
    with pytest.raises(InputError) as caught:
        load_audio(data, name="voice-note.wav", limits=limits)
    message = str(caught.value)
    assert message.startswith("voice-note.wav is 32,") and "over the 10,000 bytes limit" in message
    assert "(MediaLimits.max_audio_bytes)" in message and "raise the limit" in message
    with pytest.raises(InputError, match=r"MediaLimits.max_audio_bytes"):
        audio_duration(data, name="voice-note.wav", limits=limits)


def test_audio_files_on_disk_get_the_same_cap(tmp_path, no_disk):
    path = tone_wav(tmp_path / "long.wav")
    with pytest.raises(InputError, match=r"long.wav is 32,\d+ bytes, over the 1,000 bytes limit"):
        load_audio(path, limits=MediaLimits(max_audio_bytes=1_000))


def test_the_default_audio_cap_is_above_ten_minutes_of_studio_wav():
    ten_minutes_48k_24bit_stereo = 600 * 48_000 * 3 * 2
    assert MediaLimits().max_audio_bytes > ten_minutes_48k_24bit_stereo


@needs_ffmpeg
def test_audio_under_the_cap_still_decodes(tmp_path):
    data = tone_wav(tmp_path / "note.wav").read_bytes()
    assert load_audio(data, name="note.wav", limits=MediaLimits(max_audio_bytes=len(data))).size == 16_000


# ---------------------------------------------------------------- names that look like options


@needs_ffmpeg
@pytest.mark.parametrize("name", ["-i.wav", "-version.mp3", "-y.flac"])
def test_a_file_named_like_an_ffmpeg_option_is_read_as_a_file(tmp_path, monkeypatch, name):
    source = tone_wav(tmp_path / "tone.wav")
    suffix = Path(name).suffix
    if suffix != ".wav":  # encode under a plain name, then give it the hostile one
        source = source.with_suffix(suffix)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "tone.wav"), str(source)], check=True)
    shutil.copy(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # the relative name is exactly what a user types: `--audio -i.wav`
    waveform = load_audio(Path(name))
    assert waveform.dtype == np.float32 and abs(waveform.size - 16_000) < 2_000  # mp3 adds encoder padding
    assert abs(audio_duration(Path(name)) - 1.0) < 0.15


@needs_ffmpeg
def test_a_broken_file_named_like_an_option_is_named_in_the_error(tmp_path, monkeypatch):
    (tmp_path / "-i.wav").write_bytes(b"RIFF\x24\0\0\0WAVEjunk" + bytes(200))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as caught:
        load_audio(Path("-i.wav"))
    assert str(caught.value).startswith("-i.wav ") and str(tmp_path) not in str(caught.value)


# ---------------------------------------------------------------- checkpoints are never fully unpickled

PACKAGE = Path(__file__).resolve().parents[2] / "polyglm"


def _torch_load_calls() -> list[tuple[Path, int, bool]]:
    """(file, line, passes weights_only=True) for every torch.load(...) call in the package."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch":
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                calls.append((path.relative_to(PACKAGE.parent), node.lineno, safe))
    return calls


def test_every_torch_load_in_the_package_is_weights_only():
    calls = _torch_load_calls()
    assert len(calls) >= 3  # the encoders, the converter and the training checkpoints
    assert [f"{path}:{line}" for path, line, safe in calls if not safe] == []


class _Planted:
    """What a malicious checkpoint carries: unpickling it calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _planted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    marker, path = tmp_path / "pwned", tmp_path / "checkpoint.pt"
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 1, "projector": {}, "payload": _Planted(marker)}, path)
    return path, marker


def test_a_planted_adapter_checkpoint_is_refused_without_running_it(tiny_platform, tmp_path):
    from polyglm.pipelines.train_adapter import TrainOptions, train_adapter

    _, marker = _planted_checkpoint(tmp_path / "run")
    options = TrainOptions(profile="tiny", modality="image", items=20, epochs=1, batch_size=4, lm_dtype="float32",
                           eval_generate=0, out_dir=tmp_path / "run")  # fmt: skip
    with pytest.raises(InputError, match=r"cannot be read safely .*delete it to train from the start"):
        train_adapter(options, platform=tiny_platform)
    assert not marker.exists()


def test_a_planted_finetune_checkpoint_is_refused_without_running_it(tmp_path):
    from polyglm.platform.trainer import read_checkpoint

    path, marker = _planted_checkpoint(tmp_path)
    with pytest.raises(InputError, match=r"cannot be read safely"):
        read_checkpoint(path, "fingerprint")
    assert not marker.exists()
