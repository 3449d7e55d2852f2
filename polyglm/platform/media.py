"""Safe loading of user images and audio (paths or uploaded bytes) into what the encoders take.

Every file is treated as hostile until proven otherwise: the format is sniffed from magic bytes
and must agree with the extension, image dimensions are checked before any pixel is decoded
(decompression bombs), and audio is decoded by the `ffmpeg` binary in a subprocess whose output
is read in small chunks, so a two-hour upload is refused after at most the allowed length.
Every refusal is an `InputError` whose message names the file, the problem and the fix.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from polyglm.platform.errors import InputError, PolyglmError


@dataclass(frozen=True)
class MediaLimits:
    # images whose header declares more pixels are refused before any pixel is decoded
    max_image_pixels: int = 40_000_000
    # image files (or uploads) larger than this many bytes are refused before parsing
    max_image_bytes: int = 50_000_000
    # audio files (or uploads) larger than this many bytes are refused before an upload is written to
    # disk or ffmpeg runs; 600 s of 48 kHz 24-bit stereo WAV is 173 MB, so no clip within
    # max_audio_seconds is refused for its size
    max_audio_bytes: int = 200_000_000
    # longer audio is refused; decoding stops as soon as this much has been decoded
    max_audio_seconds: float = 600.0
    # sample rate (Hz) of the mono float32 waveform load_audio returns
    sample_rate: int = 16_000
    # a whole clip whose RMS level (dBFS, full scale = 1.0) is below this counts as silence
    silence_dbfs: float = -60.0


DEFAULT_LIMITS = MediaLimits()

IMAGE_FORMATS = frozenset({"png", "jpeg", "webp", "bmp", "gif"})
AUDIO_FORMATS = frozenset({"wav", "flac", "mp3", "ogg", "m4a", "webm"})
IMAGE_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp", ".gif": "gif"}
# .opus/.oga are the usual names of Ogg Opus/Vorbis voice notes; the data is plain Ogg.
AUDIO_EXTENSIONS = {
    ".wav": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".m4a": "m4a",
    ".webm": "webm",
}
# Formats sniff_format recognises only to say precisely what an unsupported file is.
_KNOWN_UNSUPPORTED = frozenset({"tiff", "heic", "avif"})
_PIL_FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF"}
# Enough for every magic number and for walking a WAV header's chunks up to "data".
_HEAD_BYTES = 4096
# 1 s of 16 kHz float32 per read: the decoder overshoots the audio limit by at most this much.
_PCM_CHUNK_BYTES = 64 * 1024
_FLOAT32_BYTES = 4
_SUBPROCESS_TIMEOUT_S = 120


# --------------------------------------------------------------------------------------------
# Format sniffing


def sniff_format(data_head: bytes) -> str | None:
    """The format the first bytes of a file announce, or None when no known magic number matches.

    Returns one of IMAGE_FORMATS or AUDIO_FORMATS, or "tiff"/"heic"/"avif" (recognised so that
    messages can say what an unsupported file really is).
    """
    head = bytes(data_head[:16])
    for sniffer in (_sniff_image, _sniff_container_audio, _sniff_mp3):
        found = sniffer(head)
        if found is not None:
            return found
    return None


def _sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    # "BM" alone is two letters of text; BMP's four reserved header bytes are zero in practice.
    if head[:2] == b"BM" and len(head) >= 10 and head[6:10] == b"\0\0\0\0":
        return "bmp"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    return None


def _sniff_container_audio(head: bytes) -> str | None:
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska/WebM
        return "webm"
    if head[4:8] == b"ftyp":  # ISO base media; HEIF/AVIF images share the box, told apart by brand
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "heic"
        return "avif" if brand in (b"avif", b"avis") else "m4a"
    return None


def _sniff_mp3(head: bytes) -> str | None:
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    # An MPEG audio frame sync; layer 0 is AAC's ADTS, bitrate 15 and rate 3 are invalid values.
    layer, bitrate_index, rate_index = (head[1] >> 1) & 3, head[2] >> 4, (head[2] >> 2) & 3
    return "mp3" if layer != 0 and bitrate_index != 15 and rate_index != 3 else None


# --------------------------------------------------------------------------------------------
# Reading a source and checking that its name and contents agree


Source = Path | str | bytes


@dataclass(frozen=True)
class _Input:
    label: str  # what messages call the file: the given name, else the path
    path: Path | None  # the file on disk, or None for uploaded bytes
    data: bytes | None  # the uploaded bytes, or None for a file on disk
    size: int  # bytes
    head: bytes  # the first _HEAD_BYTES bytes


def _read_input(source: Source, name: str | None, kind: str) -> _Input:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = name or f"the uploaded {kind}"
        result = _Input(label, None, data, len(data), data[:_HEAD_BYTES])
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            problem = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise InputError(f"{label} {problem}: give the path of an {kind} file")
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
        result = _Input(label, path, None, path.stat().st_size, head)
    if result.size == 0:
        raise InputError(f"{result.label} is empty (0 bytes): the upload or copy did not finish; give the file again")
    return result


def _check_format(given: _Input, kind: str, extensions: dict[str, str], formats: frozenset[str]) -> str | None:
    """The format to decode as; refuses unsupported extensions and extensions that lie."""
    extension = Path(given.label).suffix.lower()
    sniffed = sniff_format(given.head)
    if extension and extension not in extensions:
        raise InputError(_unsupported_extension_message(given.label, extension, kind, extensions, sniffed, formats))
    if sniffed is not None and sniffed not in formats:
        raise InputError(_wrong_kind_message(given.label, kind, sniffed, extensions))
    declared = extensions.get(extension)
    if declared is not None and sniffed is not None and declared != sniffed:
        fixed = _with_extension(given.label, sniffed, extensions)
        raise InputError(
            f"{given.label} holds {sniffed.upper()} data, not {declared.upper()} as its extension says: "
            f"rename it to {fixed} (or re-export it as a real {declared.upper()} file)"
        )
    if declared is None and sniffed is None:
        raise InputError(
            f"{given.label} is not a recognised {kind} file (its first bytes match no supported format); "
            f"supported: {_extension_list(extensions)}"
        )
    return sniffed or declared


def _unsupported_extension_message(
    label: str, extension: str, kind: str, extensions: dict[str, str], sniffed: str | None, formats: frozenset[str]
) -> str:
    as_kind = "images" if kind == "image" else kind
    message = f"{label}: '{extension}' files are not supported as {as_kind}; supported: {_extension_list(extensions)}. "
    if sniffed in formats:
        return (
            message + f"Its contents are {sniffed.upper()}: rename it to {_with_extension(label, sniffed, extensions)}"
        )
    return message + _conversion_hint(label, kind)


def _wrong_kind_message(label: str, kind: str, sniffed: str, extensions: dict[str, str]) -> str:
    supported = _extension_list(extensions)
    if kind == "image" and sniffed in _KNOWN_UNSUPPORTED:
        return (
            f"{label} holds {sniffed.upper()} data, which is not a supported image format; supported: {supported}. "
            f"{_conversion_hint(label, kind)}"
        )
    other_kind = "audio" if sniffed in AUDIO_FORMATS else "image"
    a_kind = "an image" if kind == "image" else "audio"
    return f"{label} holds {sniffed.upper()} {other_kind} data, not {a_kind}: give an {kind} file ({supported})"


def _conversion_hint(label: str, kind: str) -> str:
    if kind == "audio":
        return f"Convert it first, e.g. `ffmpeg -i {label} {Path(label).with_suffix('.wav').name}`"
    return "Convert it to PNG or JPEG first"


def _extension_list(extensions: dict[str, str]) -> str:
    return ", ".join(sorted(extensions))


def _with_extension(label: str, fmt: str, extensions: dict[str, str]) -> str:
    preferred = next(ext for ext, known in extensions.items() if known == fmt)  # dict order: .jpg before .jpeg
    return Path(label).with_suffix(preferred).name


# --------------------------------------------------------------------------------------------
# Images


def load_image(source: Source, name: str | None = None, limits: MediaLimits = DEFAULT_LIMITS) -> Image.Image:
    """An upright RGB image (first frame of a GIF); refuses bombs, corrupt and mislabelled files."""
    given = _read_input(source, name, "image")
    _refuse_too_many_bytes(given, limits.max_image_bytes, "max_image_bytes", "recompress or downscale it")
    fmt = _check_format(given, "image", IMAGE_EXTENSIONS, IMAGE_FORMATS)
    with _open_lazily(given, fmt, limits.max_image_pixels) as image:
        _refuse_too_many_pixels(given.label, image.size, limits.max_image_pixels)
        _decode_pixels(image, given.label, fmt)
        return _to_rgb(_upright(image))


def _refuse_too_many_bytes(given: _Input, limit: int, setting: str, fix: str) -> None:
    if given.size > limit:
        raise InputError(
            f"{given.label} is {_byte_count(given.size)}, over the {_byte_count(limit)} limit "
            f"(MediaLimits.{setting}): {fix}, or raise the limit"
        )


def _byte_count(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1_000_000 else f"{n_bytes:,} bytes"


# PIL's own bomb guard is a process-wide setting: we set it to our limit only around our own
# header parse, one call at a time, so PIL and this module never disagree about what is a bomb.
_PIL_GUARD_LOCK = threading.Lock()


@contextmanager
def _open_lazily(given: _Input, fmt: str | None, max_pixels: int) -> Iterator[Image.Image]:
    """Image.open reads only the header; the pixels are decoded later by .load()."""
    formats = [_PIL_FORMAT_NAMES[fmt]] if fmt else list(_PIL_FORMAT_NAMES.values())
    fp = io.BytesIO(given.data) if given.data is not None else given.path
    try:
        with _PIL_GUARD_LOCK, warnings.catch_warnings():
            # Between our limit and twice it PIL only warns: our own check below refuses with the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                image = Image.open(fp, formats=formats)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Image.DecompressionBombError as error:  # above twice our limit PIL refuses by itself
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels[1]):,} pixels" if pixels else "over twice the limit"
        raise InputError(_too_many_pixels_message(given.label, size, max_pixels)) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(_corrupt_image_message(given.label, fmt, error)) from error
    with image:
        yield image


def _refuse_too_many_pixels(label: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(_too_many_pixels_message(label, f"{width}x{height} = {width * height:,} pixels", max_pixels))


def _too_many_pixels_message(label: str, size: str, max_pixels: int) -> str:
    return (
        f"{label} declares {size}, over the {max_pixels:,} pixel limit (MediaLimits.max_image_pixels); "
        f"it was not decoded (a file this large can exhaust memory). Downscale the image, or raise the limit "
        f"if you trust the file"
    )


def _decode_pixels(image: Image.Image, label: str, fmt: str | None) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(_corrupt_image_message(label, fmt, error)) from error


def _corrupt_image_message(label: str, fmt: str | None, error: BaseException) -> str:
    what = f"a {fmt.upper()} image" if fmt else "an image"
    return (
        f"{label} cannot be decoded as {what} ({error}): the file is truncated, corrupt or not {what}. "
        f"Re-export or re-upload the complete file"
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos store pixels sideways plus a rotation tag)."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        return image  # an unreadable EXIF block should not cost the user the picture


_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; transparency becomes white (what a viewer shows), not black (what convert gives)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_gray_to_l(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")  # always a new image, independent of the (closed) file


def _sixteen_bit_gray_to_l(image: Image.Image) -> Image.Image:
    # Image.convert("L") clips 16-bit values at 255 (a white picture); scale the full range instead.
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")


# --------------------------------------------------------------------------------------------
# Audio


def load_audio(source: Source, name: str | None = None, limits: MediaLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A float32 mono waveform at limits.sample_rate; refuses long, silent, corrupt or mislabelled audio."""
    given = _read_input(source, name, "audio")
    _refuse_too_many_bytes(given, limits.max_audio_bytes, "max_audio_bytes", _audio_size_fix(given.label))
    _check_format(given, "audio", AUDIO_EXTENSIONS, AUDIO_FORMATS)
    _refuse_truncated_wav(given)
    max_samples = int(limits.max_audio_seconds * limits.sample_rate)
    with _on_disk(given) as path:
        probe = _probe(path, given.label)
        if probe.duration is not None and probe.duration > limits.max_audio_seconds:
            raise InputError(_too_long_message(given.label, f"is {probe.duration:.1f} s long", limits))
        decoded = _decode_pcm(path, given.label, limits.sample_rate, max_samples, keep=True)
    if decoded.over_limit:
        passed = decoded.samples / limits.sample_rate
        finding = f"has no duration in its header and decoding passed {passed:.1f} s (then stopped)"
        raise InputError(_too_long_message(given.label, finding, limits))
    _refuse_failed_decode(given.label, decoded, probe, limits.sample_rate)
    waveform = np.frombuffer(decoded.pcm, dtype=np.float32)  # zero-copy; writable (bytearray)
    _refuse_silence(given.label, waveform, limits.silence_dbfs)
    return waveform


def audio_duration(source: Source, name: str | None = None, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    """Seconds of audio: from the container header, else by decoding and counting samples."""
    given = _read_input(source, name, "audio")
    _refuse_too_many_bytes(given, limits.max_audio_bytes, "max_audio_bytes", _audio_size_fix(given.label))
    _check_format(given, "audio", AUDIO_EXTENSIONS, AUDIO_FORMATS)
    with _on_disk(given) as path:
        probe = _probe(path, given.label)
        if probe.duration is not None:
            return probe.duration
        # Streamed WebM/Ogg record no duration: decode and count the samples without keeping them.
        decoded = _decode_pcm(path, given.label, DEFAULT_LIMITS.sample_rate, max_samples=None, keep=False)
    if decoded.returncode != 0:
        raise InputError(_corrupt_audio_message(given.label, decoded.error or f"ffmpeg exit code {decoded.returncode}"))
    return decoded.samples / DEFAULT_LIMITS.sample_rate


def _audio_size_fix(label: str) -> str:
    return f"compress it (e.g. `ffmpeg -i {label} -c:a libopus {Path(label).stem}.ogg`) or cut it shorter"


@contextmanager
def _on_disk(given: _Input) -> Iterator[Path]:
    """A path ffmpeg can seek in (MP4/M4A keeps its index at the end, which a pipe cannot reach)."""
    if given.path is not None:
        yield given.path
        return
    suffix = Path(given.label).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="polyglm-upload-") as folder:
        path = Path(folder) / f"upload{suffix if suffix in AUDIO_EXTENSIONS else ''}"
        path.write_bytes(given.data or b"")
        yield path


def _refuse_truncated_wav(given: _Input) -> None:
    """ffmpeg decodes a cut WAV without complaint; its header still says how long it should be."""
    declared = _wav_data_chunk(given.head)
    if declared is None:
        return
    offset, size = declared
    # 0 and 0xFFFFFFFF are what streaming writers put there before the length is known.
    if size not in (0, 0xFFFFFFFF) and offset + size > given.size:
        raise InputError(
            f"{given.label} is truncated: its WAV header announces {size:,} bytes of audio but only "
            f"{max(0, given.size - offset):,} are present. Re-export or re-upload the complete file"
        )


def _wav_data_chunk(head: bytes) -> tuple[int, int] | None:
    """(offset of the sample data, its declared size) for a RIFF/WAVE header, else None."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= len(head):
        chunk_id, size = head[position : position + 4], int.from_bytes(head[position + 4 : position + 8], "little")
        if chunk_id == b"data":
            return position + 8, size
        position += 8 + size + (size & 1)  # RIFF chunks are padded to even lengths
    return None


@dataclass(frozen=True)
class _Probe:
    duration: float | None  # seconds, None when the container does not record it (streamed files)
    # ffprobe's warning that the file is smaller than its header promises (MP3 with a Xing frame count)
    short_file_warning: str | None


def _ffmpeg_input(path: Path) -> str:
    """The path as ffmpeg/ffprobe must get it: absolute, so a name such as `-i.wav` or `-version.mp3` cannot
    be read as an option, nor `concat:a|b` or `http:...` as a protocol (ffmpeg parses both from the start)."""
    return str(path.absolute())


def _probe(path: Path, label: str) -> _Probe:
    target = _ffmpeg_input(path)
    command = [
        _tool("ffprobe"), "-v", "level+warning", "-show_entries", "stream=codec_type,duration:format=duration",
        "-of", "json", target,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=_SUBPROCESS_TIMEOUT_S, check=False)
    messages = _ffmpeg_messages(result.stderr, target, label)
    if result.returncode != 0:
        raise InputError(
            _corrupt_audio_message(label, _first_error(messages) or f"ffprobe exit code {result.returncode}")
        )
    info = json.loads(result.stdout or b"{}")
    audio_streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio_streams:
        raise InputError(f"{label} has no audio stream (nothing to listen to): give a recording that contains sound")
    durations = (_seconds(audio_streams[0].get("duration")), _seconds(info.get("format", {}).get("duration")))
    short_file = next((text for level, text in messages if level == "warning" and "do not match" in text), None)
    return _Probe(next((d for d in durations if d is not None), None), short_file)


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # ffprobe writes "N/A" or leaves the key out when it does not know
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass
class _Decoded:
    pcm: bytearray  # float32 little-endian mono samples (empty when not kept)
    samples: int  # how many samples were read
    over_limit: bool  # reading stopped (and ffmpeg was killed) because the limit was passed
    returncode: int  # ffmpeg's exit status (negative when killed)
    error: str | None  # ffmpeg's first error line, cleaned


def _decode_pcm(path: Path, label: str, sample_rate: int, max_samples: int | None, keep: bool) -> _Decoded:
    """Run ffmpeg and read its raw output in 1 s chunks, killing it as soon as max_samples is passed."""
    target = _ffmpeg_input(path)
    command = [
        _tool("ffmpeg"), "-nostdin", "-v", "level+error", "-i", target, "-map", "0:a:0", "-vn",
        "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-",
    ]  # fmt: skip
    pcm, n_bytes, over_limit, finished = bytearray(), 0, False, False
    # stderr goes to a file: a pipe nobody reads while we read stdout could fill up and stall ffmpeg.
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file)
        try:
            while chunk := process.stdout.read(_PCM_CHUNK_BYTES):
                n_bytes += len(chunk)
                if keep:
                    pcm += chunk
                if max_samples is not None and n_bytes // _FLOAT32_BYTES > max_samples:
                    over_limit = True
                    break
            else:
                finished = True
        finally:
            if not finished:
                process.kill()  # over the limit (or interrupted): do not decode the rest
            process.stdout.close()
            returncode = process.wait()
        stderr_file.seek(0)
        error = _first_error(_ffmpeg_messages(stderr_file.read(4096), target, label))
    return _Decoded(pcm, n_bytes // _FLOAT32_BYTES, over_limit, returncode, error)


def _refuse_failed_decode(label: str, decoded: _Decoded, probe: _Probe, sample_rate: int) -> None:
    if decoded.returncode != 0 or (decoded.samples == 0 and decoded.error):
        raise InputError(_corrupt_audio_message(label, decoded.error or f"ffmpeg exit code {decoded.returncode}"))
    if decoded.samples == 0:
        raise InputError(f"{label} contains no audio samples (zero length): record or export the clip again")
    # ffmpeg decodes what is there and exits 0; a complaint (its decode error, or ffprobe's size
    # warning) plus much less audio than the header promised means the file was cut short.
    complaint = decoded.error or probe.short_file_warning
    seconds = decoded.samples / sample_rate
    if complaint and probe.duration is not None and seconds < 0.9 * probe.duration - 0.1:
        raise InputError(
            f"{label} is truncated or corrupt: its header says {probe.duration:.1f} s but only {seconds:.1f} s "
            f"could be decoded (ffmpeg: {complaint}). Re-export or re-upload the complete file"
        )


def _corrupt_audio_message(label: str, reason: str) -> str:
    return (
        f"{label} cannot be decoded as audio (ffmpeg: {reason}): the file is corrupt, truncated or not audio. "
        f"Re-export or re-upload the complete file"
    )


def _too_long_message(label: str, finding: str, limits: MediaLimits) -> str:
    limit = f"{limits.max_audio_seconds:g}"
    return (
        f"{label} {finding}, over the {limit} s limit (MediaLimits.max_audio_seconds). Cut it shorter "
        f"(e.g. `ffmpeg -i {label} -t {limit} {Path(label).stem}_cut{Path(label).suffix}`) or raise max_audio_seconds"
    )


def _refuse_silence(label: str, waveform: np.ndarray, silence_dbfs: float) -> None:
    level = _rms_dbfs(waveform)
    if level < silence_dbfs:
        shown = "-inf" if math.isinf(level) else f"{level:.1f}"
        raise InputError(
            f"{label} contains only silence (RMS level {shown} dBFS, below the {silence_dbfs:g} dBFS threshold, "
            f"MediaLimits.silence_dbfs): check the microphone and record again, or lower silence_dbfs for quiet audio"
        )


def _rms_dbfs(waveform: np.ndarray) -> float:
    # Summed in float64 blocks: a float32 running sum over ten minutes of samples loses precision.
    block = 1 << 20
    energy = sum(
        float(np.dot(part.astype(np.float64), part)) for part in np.split(waveform, range(block, waveform.size, block))
    )
    mean_square = energy / max(1, waveform.size)
    return 10.0 * math.log10(mean_square) if mean_square > 0 else -math.inf


# With `-v level+…` every line reads "[demuxer @ 0x55…] [error] text" (the first bracket is optional).
_FFMPEG_LINE = re.compile(r"^(?:\[[^\]]+ @ 0x[0-9a-f]+\]\s*)?(?:\[(?P<level>[a-z]+)\]\s*)?(?P<text>.*)$")


def _ffmpeg_messages(stderr: bytes, target: str, label: str) -> list[tuple[str, str]]:
    """(level, text) per ffmpeg log line, naming the file as the user does (not the path ffmpeg was given)."""
    messages = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        match = _FFMPEG_LINE.match(line.strip())
        text = match["text"].replace(f"{target}: ", "").replace(target, label).strip() if match else ""
        if text:
            messages.append((match["level"] or "error", text))
    return messages


def _first_error(messages: list[tuple[str, str]]) -> str | None:
    return next((text for level, text in messages if level in ("error", "fatal", "panic")), None)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PolyglmError(
            f"`{name}` is not installed; audio needs it: install ffmpeg (Debian: apt-get install ffmpeg)"
        )
    return found
