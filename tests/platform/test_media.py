"""Safe media loading: every fixture is made here at test time (PIL, espeak-ng, ffmpeg); no binaries in git."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from polyglm.platform.errors import InputError
from polyglm.platform.media import (
    AUDIO_FORMATS,
    IMAGE_FORMATS,
    MediaLimits,
    audio_duration,
    load_audio,
    load_image,
    sniff_format,
)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("ffmpeg", "ffprobe", "espeak-ng")),
    reason="needs the Debian ffmpeg and espeak-ng binaries (make install runs system-deps)",
)

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def traced_peak_bytes(function, *args, **kwargs) -> tuple[BaseException | None, int]:
    """Run function under tracemalloc; return the exception it raised (if any) and the peak traced bytes."""
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        raised = None
    except Exception as error:
        raised = error
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


def two_tone(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: any rotation or mirroring shows."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    return image


def close_to(pixel, expected, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --------------------------------------------------------------------------------------------
# sniff_format


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "jpeg"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "webp"),
        (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0", "bmp"),
        (b"GIF89a\x01\0\x01\0", "gif"),
        (b"RIFF\x24\0\0\0WAVEfmt ", "wav"),
        (b"fLaC\0\0\0\x22", "flac"),
        (b"ID3\x04\0\0\0\0\0\0", "mp3"),
        (b"\xff\xfb\x90\x64\0\0", "mp3"),  # MPEG-1 layer III frame sync, no ID3 tag
        (b"\xff\xf1\x50\x80\0\0", None),  # AAC ADTS shares the sync word but has layer 0
        (b"OggS\0\x02\0\0", "ogg"),
        (b"\0\0\0\x20ftypM4A \0\0\0\0", "m4a"),
        (b"\0\0\0\x18ftypheic\0\0\0\0", "heic"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "webm"),
        (b"II*\0\x08\0\0\0", "tiff"),
        (b"<svg xmlns=", None),
        (b"BMW is a car", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_magic_bytes(head, expected):
    assert sniff_format(head) == expected


# --------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("extension", [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"])
def test_every_supported_image_format_decodes_to_rgb(tmp_path, extension):
    path = tmp_path / f"picture{extension}"
    two_tone(40, 30).save(path)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (40, 30))
    assert close_to(image.getpixel((5, 15)), RED, tolerance=40)  # lossy JPEG/WebP blur the colours a little
    assert close_to(image.getpixel((35, 15)), BLUE, tolerance=40)


def test_supported_image_formats_match_the_extension_table():
    assert {sniff_format(_encoded(two_tone(8, 8), fmt)[:16]) for fmt in IMAGE_FORMATS} == IMAGE_FORMATS


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_uploaded_bytes_decode_with_and_without_a_name():
    data = _encoded(two_tone(10, 6), "png")
    assert load_image(data, name="upload.png").size == (10, 6)
    assert load_image(data).size == (10, 6)  # no name: the magic bytes decide


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    two_tone(40, 20).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)  # the stored landscape pixels come out portrait
    assert close_to(image.getpixel((10, 5)), RED, tolerance=40)  # the left edge is now the top
    assert close_to(image.getpixel((10, 35)), BLUE, tolerance=40)


def test_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "animation.gif"
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    assert load_image(path).getpixel((4, 4)) == RED


@pytest.mark.parametrize(
    ("make", "extension", "expected"),
    [
        (lambda: Image.new("RGBA", (4, 4), (0, 0, 0, 0)), ".png", WHITE),  # transparent -> white, not black
        (lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 128)), ".png", (255, 127, 127)),  # half-transparent red
        (lambda: Image.new("LA", (4, 4), (0, 0)), ".png", WHITE),
        (lambda: Image.new("LA", (4, 4), (0, 255)), ".png", (0, 0, 0)),
        (lambda: Image.new("RGB", (4, 4), GREEN).convert("P"), ".png", GREEN),
        (lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), ".jpg", RED),
        (lambda: Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)), ".png", (128, 128, 128)),  # 16-bit
        (lambda: Image.new("1", (4, 4), 1), ".bmp", WHITE),
    ],
    ids=["rgba-clear", "rgba-half", "la-clear", "la-opaque", "palette", "cmyk-jpeg", "gray-16bit", "bilevel"],
)
def test_every_pixel_mode_becomes_rgb(tmp_path, make, extension, expected):
    path = tmp_path / f"mode{extension}"
    make().save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert close_to(image.getpixel((1, 1)), expected, tolerance=3)


def test_palette_transparency_becomes_white(tmp_path):
    path = tmp_path / "clear.gif"
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette_image.save(path, transparency=0)
    assert load_image(path).getpixel((1, 1)) == WHITE


def _png_declaring(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed): a decompression bomb."""
    data = bytearray(_encoded(Image.new("1", (1, 1)), "png"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(20_000, 20_000))  # 400 Mpx: 1.2 GB as RGB if it were decoded
    with pytest.raises(Image.DecompressionBombError, match=r"400000000 pixels"):
        Image.open(path)  # PIL parses the header as valid (then its own default guard trips)
    error, peak = traced_peak_bytes(load_image, path)
    assert isinstance(error, InputError)
    assert "400,000,000 pixels" in str(error)
    assert "40,000,000 pixel limit (MediaLimits.max_image_pixels)" in str(error)
    assert peak < 5_000_000


def test_image_between_the_limit_and_twice_it_is_refused_with_its_size(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_declaring(300, 200))  # 60,000 px against a 40,000 px limit (PIL itself only warns here)
    with pytest.raises(InputError, match=r"300x200 = 60,000 pixels, over the 40,000 pixel limit"):
        load_image(path, limits=MediaLimits(max_image_pixels=40_000))


def test_pil_global_guard_is_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "ok.png"
    two_tone(4, 4).save(path)
    load_image(path, limits=MediaLimits(max_image_pixels=1000))
    assert before == Image.MAX_IMAGE_PIXELS


def test_file_over_the_byte_limit_is_refused(tmp_path):
    path = tmp_path / "heavy.bmp"
    two_tone(100, 100).save(path)
    with pytest.raises(
        InputError, match=r"heavy.bmp is 30,054 bytes, over the 1,000 bytes limit \(MediaLimits.max_image_bytes\)"
    ):
        load_image(path, limits=MediaLimits(max_image_bytes=1000))


def test_truncated_jpeg_is_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(noise), "jpeg")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.jpg cannot be decoded as a JPEG image \(image file is truncated"):
        load_image(path)


def test_random_bytes_named_png_are_refused(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputError, match=r"noise.png cannot be decoded as a PNG image .*not a PNG image"):
        load_image(path)


def test_jpeg_named_png_says_what_it_is_and_how_to_fix_it(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_encoded(two_tone(8, 8), "jpeg"))
    with pytest.raises(
        InputError, match=r"photo.png holds JPEG data, not PNG as its extension says: rename it to photo.jpg"
    ):
        load_image(path)


def test_audio_named_as_an_image_is_refused(tmp_path, speech):
    path = tmp_path / "voice.png"
    shutil.copy(speech["wav"], path)
    with pytest.raises(
        InputError, match=r"voice.png holds WAV audio data, not an image: give an image file \(.bmp, .gif"
    ):
        load_image(path)
    with pytest.raises(InputError, match=r"the uploaded image holds WAV audio data, not an image"):
        load_image(speech["wav"].read_bytes())


@pytest.mark.parametrize("name", ["scan.tiff", "logo.svg", "notes.txt"])
def test_unsupported_image_formats_list_the_supported_ones(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".tiff"):
        two_tone(8, 8).save(path)
    else:
        path.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>" if name.endswith(".svg") else "hello")
    suffix = Path(name).suffix
    with pytest.raises(
        InputError,
        match=rf"'{suffix}' files are not supported as images; supported: .bmp, .gif, .jpeg, .jpg, .png, .webp",
    ):
        load_image(path)


def test_tiff_data_behind_a_png_name_is_named(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(_encoded(two_tone(8, 8), "tiff"))
    with pytest.raises(InputError, match=r"scan.png holds TIFF data, which is not a supported image format"):
        load_image(path)


def test_unnamed_bytes_in_no_known_format_are_refused():
    with pytest.raises(InputError, match=r"the uploaded image is not a recognised image file .*supported: .bmp"):
        load_image(b"hello world, not a picture")
    with pytest.raises(InputError, match=r"the uploaded audio is not a recognised audio file .*supported: .flac"):
        load_audio(b"hello world, not a recording")


def test_empty_and_missing_image_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(InputError, match=r"empty.png is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(InputError, match=r"the uploaded image is empty"):
        load_image(b"")
    with pytest.raises(InputError, match=r"missing.png does not exist"):
        load_image(tmp_path / "missing.png")


# --------------------------------------------------------------------------------------------
# Audio fixtures


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    """One espeak-ng sentence (about 3 s) in every supported audio format."""
    folder = tmp_path_factory.mktemp("speech")
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    encoders = {
        "flac": [],
        "mp3": [],
        "ogg": ["-c:a", "libvorbis"],
        "m4a": ["-c:a", "aac"],
        "webm": ["-c:a", "libopus"],
    }
    paths = {"wav": wav}
    for fmt, codec in encoders.items():
        paths[fmt] = folder / f"speech.{fmt}"
        ffmpeg("-i", str(wav), *codec, str(paths[fmt]))
    return paths


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory) -> dict[str, Path]:
    """Two hours of quiet noise as 6 kb/s Opus: one minute encoded, then looped by stream copy (about 1 s, 4 MB).

    The .ogg records its duration; the .webm is written to a pipe, so its header has none and only
    decoding can tell its length.
    """
    folder = tmp_path_factory.mktemp("long")
    minute = folder / "minute.ogg"
    ffmpeg(
        "-f", "lavfi", "-i", "anoisesrc=d=60:a=0.1:r=16000", "-ac", "1", "-c:a", "libopus", "-b:a", "6k", str(minute)
    )
    ogg, webm = folder / "two_hours.ogg", folder / "two_hours.webm"
    ffmpeg("-stream_loop", "119", "-i", str(minute), "-c", "copy", str(ogg))
    with webm.open("wb") as out:
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-stream_loop",
                "119",
                "-i",
                str(minute),
                "-c",
                "copy",
                "-f",
                "webm",
                "-",
            ],
            stdout=out,
            check=True,
        )
    return {"ogg": ogg, "webm": webm}


def sine_wav(path: Path, seconds: float, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def streamed_webm(source: Path, target: Path) -> Path:
    """Opus in WebM written to a pipe: the container carries no duration."""
    with target.open("wb") as out:
        command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-c:a", "libopus", "-f", "webm", "-"]
        subprocess.run(command, stdout=out, check=True)
    return target


# --------------------------------------------------------------------------------------------
# Audio


@pytest.mark.parametrize("fmt", sorted(AUDIO_FORMATS))
def test_every_supported_audio_format_decodes_to_16k_mono_float32(speech, fmt):
    expected_seconds = soundfile.info(speech["wav"]).duration
    waveform = load_audio(speech[fmt])
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(waveform.size / 16_000 - expected_seconds) < 0.1
    assert 0.01 < float(np.sqrt(np.mean(waveform.astype(np.float64) ** 2))) < 1.0  # speech, not silence or clipping
    assert abs(audio_duration(speech[fmt]) - expected_seconds) < 0.1


def test_other_sample_rates_are_honoured(speech):
    waveform = load_audio(speech["flac"], limits=MediaLimits(sample_rate=8_000))
    assert abs(waveform.size / 8_000 - soundfile.info(speech["wav"]).duration) < 0.1


def test_uploaded_audio_bytes_decode_and_use_the_name_in_messages(speech):
    waveform = load_audio(speech["m4a"].read_bytes(), name="voice-note.m4a")  # M4A needs a seekable file
    assert abs(waveform.size / 16_000 - soundfile.info(speech["wav"]).duration) < 0.1
    assert load_audio(speech["ogg"].read_bytes()).size > 0  # no name: the magic bytes decide
    with pytest.raises(InputError, match=r"voice-note.wav holds OGG data, not WAV"):
        load_audio(speech["ogg"].read_bytes(), name="voice-note.wav")


def test_mp3_named_wav_says_what_it_is_and_how_to_fix_it(tmp_path, speech):
    path = tmp_path / "clip.wav"
    shutil.copy(speech["mp3"], path)
    with pytest.raises(
        InputError, match=r"clip.wav holds MP3 data, not WAV as its extension says: rename it to clip.mp3"
    ):
        load_audio(path)


def test_an_image_named_as_audio_is_refused(tmp_path):
    path = tmp_path / "song.wav"
    path.write_bytes(_encoded(two_tone(8, 8), "png"))
    with pytest.raises(InputError, match=r"song.wav holds PNG image data, not audio: give an audio file \(.flac, .m4a"):
        load_audio(path)


@pytest.mark.parametrize("name", ["memo.aiff", "notes.txt"])
def test_unsupported_audio_formats_list_the_supported_ones_and_a_conversion(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"FORM\0\0\0\x04AIFF" if name.endswith(".aiff") else b"hello")
    stem = Path(name).stem
    with pytest.raises(
        InputError,
        match=rf"audio; supported: .flac, .m4a, .mp3, .oga, .ogg, .opus, .wav, .webm. Convert it first, "
        rf"e.g. `ffmpeg -i .*{name} {stem}.wav`",
    ):
        load_audio(path)


def test_empty_audio_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.touch()
    with pytest.raises(InputError, match=r"empty.mp3 is empty \(0 bytes\)"):
        load_audio(path)


def test_header_only_wav_has_no_samples(tmp_path):
    path = tmp_path / "zero.wav"
    soundfile.write(path, np.zeros(0, dtype=np.int16), 16_000, subtype="PCM_16")
    assert path.stat().st_size == 44
    with pytest.raises(InputError, match=r"zero.wav contains no audio samples \(zero length\)"):
        load_audio(path)


def test_silence_is_refused(tmp_path):
    path = tmp_path / "quiet.wav"
    soundfile.write(path, np.zeros(32_000, dtype=np.int16), 16_000, subtype="PCM_16")
    with pytest.raises(InputError, match=r"quiet.wav contains only silence \(RMS level -inf dBFS, below the -60 dBFS"):
        load_audio(path)


def test_quiet_but_not_silent_audio_passes_when_the_threshold_allows(tmp_path):
    path = tmp_path / "hum.wav"
    t = np.arange(16_000) / 16_000
    soundfile.write(
        path, (0.0005 * np.sin(2 * np.pi * 100 * t)).astype(np.float32), 16_000, subtype="FLOAT"
    )  # ~ -69 dBFS
    with pytest.raises(InputError, match=r"RMS level -69.0 dBFS"):
        load_audio(path)
    assert load_audio(path, limits=MediaLimits(silence_dbfs=-80)).size == 16_000


def test_random_bytes_named_wav_give_ffmpegs_reason(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(
        InputError, match=r"noise.wav cannot be decoded as audio \(ffmpeg: Invalid data found when processing input\)"
    ):
        load_audio(path)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "flac",
            r"cut.flac is truncated or corrupt: its header says 2.\d s but only 1.\d s could be decoded \(ffmpeg: ",
        ),
        ("m4a", r"cut.m4a cannot be decoded as audio \(ffmpeg: moov atom not found\)"),
        ("mp3", r"cut.mp3 is truncated or corrupt: .*\(ffmpeg: filesize and duration do not match"),
        ("webm", r"cut.webm is truncated or corrupt: .*\(ffmpeg: File ended prematurely\)"),
        ("wav", r"cut.wav is truncated: its WAV header announces [\d,]+ bytes of audio but only [\d,]+ are present"),
    ],
)
def test_truncated_audio_is_refused(tmp_path, speech, fmt, expected):
    data = speech[fmt].read_bytes()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=expected):
        load_audio(path)


def test_video_without_sound_has_no_audio_stream(tmp_path):
    path = tmp_path / "silent-film.webm"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=16x16:d=0.2", "-c:v", "libvpx", str(path))
    with pytest.raises(InputError, match=r"silent-film.webm has no audio stream"):
        load_audio(path)


def test_audio_longer_than_the_limit_is_refused_by_its_header(tmp_path):
    path = sine_wav(tmp_path / "tone.wav", 12)
    message = r"tone.wav is 12.0 s long, over the 5 s limit \(MediaLimits.max_audio_seconds\). Cut it shorter"
    with pytest.raises(InputError, match=message):
        load_audio(path, limits=MediaLimits(max_audio_seconds=5))
    assert load_audio(path, limits=MediaLimits(max_audio_seconds=13)).size == 12 * 16_000


def test_audio_without_a_duration_is_refused_while_decoding(tmp_path):
    path = streamed_webm(sine_wav(tmp_path / "tone.wav", 12), tmp_path / "tone.webm")
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "N/A"  # only decoding can find out how long it is
    assert abs(audio_duration(path) - 12) < 0.1
    with pytest.raises(
        InputError,
        match=r"tone.webm has no duration in its header and decoding passed [56]\.\d s \(then stopped\), over the 5 s",
    ):
        load_audio(path, limits=MediaLimits(max_audio_seconds=5))


def test_two_hour_file_is_refused_under_the_default_limit_with_bounded_memory(two_hours):
    assert two_hours["ogg"].stat().st_size < 6_000_000
    error, peak = traced_peak_bytes(load_audio, two_hours["ogg"])
    assert isinstance(error, InputError)
    assert "two_hours.ogg is 7200.0 s long, over the 600 s limit (MediaLimits.max_audio_seconds)" in str(error)
    assert peak < 1_000_000  # refused from the header: nothing was decoded


def test_two_hour_stream_without_duration_stops_decoding_at_the_limit(two_hours):
    error, peak = traced_peak_bytes(load_audio, two_hours["webm"])
    assert isinstance(error, InputError)
    assert "two_hours.webm has no duration in its header and decoding passed 60" in str(error)
    assert peak < 50_000_000  # at most ~10 minutes of 16 kHz float32 (38 MB) were held, never two hours (460 MB)
