"""Reading and writing audio files: soundfile for wav/flac/ogg/mp3/opus, ffmpeg for anything else. A file is a path
or its bytes; reading gives float32 `(channels, T)` at the file's rate."""

import io
import math
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
from rvqgan.modeling.loading_rvqgan import first_line

from .feature_extraction_rvqgan import AudioError, check_finite


class AudioFileError(AudioError):
    """A file that cannot be read or written, with its name and the reason."""


BLOCK_SECONDS = 10.0  # audio read or written at a time


@contextmanager
def open_audio(source: str | Path | bytes, name: str | None = None) -> Iterator[sf.SoundFile]:
    """Open a path or a file's bytes for reading: with soundfile for wav/flac/ogg/mp3/opus, else (a path) as a float
    WAV decoded by ffmpeg into a temporary folder that lasts as long as the context. `name`: what errors call a file
    given by its bytes (default: "N bytes of audio")."""
    if isinstance(source, bytes):
        try:
            file = sf.SoundFile(io.BytesIO(source))
        except sf.LibsndfileError as error:
            raise AudioFileError(f"{_name(source, name)}: unreadable or corrupt audio ({first_line(error)})") from None
        with file:
            yield file
        return
    path = check_regular(source)
    try:
        file = sf.SoundFile(path)
    except sf.LibsndfileError as error:
        if not path.is_file():
            raise AudioFileError(f"{path}: no such file") from None
        soundfile_error = error
    except OSError as error:
        raise AudioFileError(f"{path}: {error.strerror or error}") from None
    else:
        with file:
            yield file
        return
    with tempfile.TemporaryDirectory() as tmp:
        with sf.SoundFile(_decode_with_ffmpeg(path, soundfile_error, Path(tmp) / "decoded.wav")) as file:
            yield file


def iter_blocks(file: sf.SoundFile) -> Iterator[np.ndarray]:
    """The audio of an open file from its start, as float32 `(channels, n)` blocks of BLOCK_SECONDS. Raises
    AudioFileError (without the file name) for a file without samples, NaN or infinite values, or data that cannot be
    decoded."""
    file.seek(0)
    empty = True
    try:
        for block in file.blocks(max(1, round(BLOCK_SECONDS * file.samplerate)), dtype="float32", always_2d=True):
            empty = False
            yield np.ascontiguousarray(check_finite(block).T)
    except sf.LibsndfileError as error:
        raise AudioFileError(f"unreadable or corrupt audio ({error})") from None
    if empty:
        raise AudioFileError("the file holds no audio samples")


def read_audio(source: str | Path | bytes, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a file -> float32 `(channels, T)` and its sampling rate."""
    with open_audio(source, name) as file:
        try:
            return np.concatenate(list(iter_blocks(file)), axis=1), file.samplerate
        except AudioError as error:
            raise AudioFileError(f"{_name(source, name)}: {error}") from None


def read_excerpt(source: str | Path | bytes, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random `seconds`-long excerpt of a file as float32 `(channels, n)` at its rate (zero-padded when the file is
    shorter), and that rate; only the excerpt is read (by seeking)."""
    with open_audio(source) as file:
        rate, n = file.samplerate, math.ceil(seconds * file.samplerate)
        file.seek(_start(file.frames, n, rng))
        return _padded(file.read(n, dtype="float32", always_2d=True).T, n), rate


def excerpt(audio: np.ndarray, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A random `seconds`-long excerpt of decoded `(channels, T)` audio, drawn as `read_excerpt` draws it."""
    n = math.ceil(seconds * rate)
    start = _start(audio.shape[-1], n, rng)
    return _padded(audio[:, start : start + n], n)


def _start(frames: int, n: int, rng: np.random.Generator) -> int:
    """A uniform random start of `n` samples among `frames` (0 when there are fewer)."""
    return int(rng.integers(0, max(frames - n, 0) + 1))


def _padded(audio: np.ndarray, n: int) -> np.ndarray:
    """`(channels, m <= n)` audio zero-padded to `(channels, n)`."""
    return np.pad(audio, ((0, 0), (0, n - audio.shape[-1])))


def _name(source: str | Path | bytes, name: str | None) -> str:
    return name or (f"{len(source)} bytes of audio" if isinstance(source, bytes) else str(source))


def _decode_with_ffmpeg(path: Path, soundfile_error: Exception, wav: Path) -> Path:
    if shutil.which("ffmpeg") is None:
        raise AudioFileError(f"{path}: unreadable audio ({soundfile_error}); install ffmpeg for other formats")
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-c:a", "pcm_f32le", str(wav)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not wav.exists():
        reason = (result.stderr.strip().splitlines() or ["ffmpeg could not decode it"])[-1]
        raise AudioFileError(f"{path}: unreadable or corrupt audio ({reason})")
    return wav


def check_regular(path: str | Path) -> Path:
    """`path`, or AudioFileError for a missing path or anything but a regular file (a FIFO or a device would block
    or never end)."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a regular file")
    return path


def refuse_existing(path: Path, force: bool):
    if path.exists() and not force:
        raise AudioFileError(f"{path}: exists (use --force to overwrite)")


def write_atomically(path: str | Path, write, force: bool = False):
    """Call `write(temporary_path)` and move the result to `path` only once it is complete; the temporary file is
    created as `open` would create `path` (0666 less the umask) and removed whatever happens. A failing write
    (disk full, file-size limit) is an AudioFileError."""
    path = Path(path)
    refuse_existing(path, force)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(str(temporary))
        os.replace(temporary, path)
    except (OSError, sf.SoundFileError, AssertionError) as error:  # soundfile asserts that a write was complete
        reason = getattr(error, "strerror", None) or (first_line(error) if str(error) else "incomplete write")
        raise AudioFileError(f"{path}: cannot write it ({reason})") from error
    finally:
        temporary.unlink(missing_ok=True)


def write_audio(path: str | Path, blocks: Iterable[np.ndarray], rate: int, channels: int, force: bool = False):
    """Write float32 `(channels, n)` blocks as one WAV (32-bit float) or FLAC (24-bit) file, by the file suffix."""
    subtype = "FLOAT" if Path(path).suffix.lower() == ".wav" else "PCM_24"

    def write(temporary: str):
        with sf.SoundFile(temporary, "w", rate, channels, subtype, format=Path(path).suffix[1:].upper()) as file:
            for block in blocks:
                file.write((block if subtype == "FLOAT" else np.clip(block, -1, 1)).T)

    write_atomically(path, write, force)
