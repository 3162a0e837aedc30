"""Reading and writing audio files: soundfile for wav/flac/ogg/mp3/opus, ffmpeg for anything else."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioFileError(ValueError):
    """An audio file that cannot be read or written, with the reason."""


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file -> float32 `(channels, samples)` and its sampling rate."""
    path = Path(path)
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        if not path.is_file():
            raise AudioFileError(f"{path}: no such file") from None
        audio, rate = _read_with_ffmpeg(path, error)
    except OSError as error:
        raise AudioFileError(f"{path}: {error.strerror or error}") from None
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio samples")
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: the audio contains NaN or infinite values")
    return np.ascontiguousarray(audio.T), rate


def _read_with_ffmpeg(path: Path, soundfile_error: Exception) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioFileError(f"{path}: unreadable audio ({soundfile_error}); install ffmpeg for other formats")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        result = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-c:a", "pcm_f32le", str(wav)],
            capture_output=True, text=True,
        )
        if result.returncode != 0 or not wav.exists():
            reason = (result.stderr.strip().splitlines() or ["ffmpeg could not decode it"])[-1]
            raise AudioFileError(f"{path}: unreadable or corrupt audio ({reason})")
        return sf.read(wav, dtype="float32", always_2d=True)


def write_atomically(path: str | Path, write, force: bool = False):
    """Call `write(temporary_path)` and move the result to `path` only once it is complete."""
    path = Path(path)
    if path.exists() and not force:
        raise AudioFileError(f"{path}: exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_audio(path: str | Path, audio: np.ndarray, rate: int, force: bool = False):
    """Write float32 `(channels, samples)` audio as WAV (32-bit float) or FLAC (24-bit), by the file suffix."""
    subtype = "FLOAT" if Path(path).suffix.lower() == ".wav" else "PCM_24"
    audio = audio if subtype == "FLOAT" else np.clip(audio, -1, 1)
    write_atomically(path, lambda tmp: sf.write(tmp, audio.T, rate, subtype=subtype), force)
