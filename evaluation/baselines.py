"""Opus and MP3 baselines through ffmpeg: `encode_decode(audio, sr, codec, kbps) -> (decoded, true_kbps)`.

The decoded audio has the input's rate and length and is aligned to it: the codec delay left after ffmpeg's own
handling (Opus pre-skip, LAME's encoder delay from its Xing/LAME header) is measured by cross-correlation within
`MAX_LAG_SECONDS` and undone. `true_kbps` is `8 * encoded file bytes / duration / 1000`, container overhead
(Ogg pages and headers, MP3 Xing frame) included, with metadata tags stripped.

Opus runs in constrained VBR (`-vbr constrained`, libopus' default is unconstrained VBR, which overshoots the
target by up to 50 % on short tonal clips) with `-application audio`.
Sampling rates: Opus encodes at 48 kHz (ffmpeg resamples; Opus picks its own audio bandwidth for the bitrate).
LAME's bitrate floor is 32 kbps at 32-48 kHz (MPEG-1), 8 kbps at 16-24 kHz (MPEG-2) and 8 kbps at 8-12 kHz
(MPEG-2.5), so MP3 below 32 kbps is encoded at a lower rate (`MP3_RATES`, close to LAME's own choice for mono) and
decoded back up to the input rate.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from rvqgan.modeling import kbps_on_disk

CODECS = ("opus", "mp3")
MAX_LAG_SECONDS = 0.05
# (highest kbps, sampling rate) for MP3, mono; above the last entry: the input rate, at most 48 kHz
MP3_RATES = ((8, 8000), (12, 11025), (16, 16000), (24, 22050), (31, 24000))


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise ImportError("the opus / mp3 baselines need the `ffmpeg` program (Debian: apt-get install ffmpeg)")
    return path


def mp3_rate(kbps: float, sampling_rate: int) -> int:
    for limit, rate in MP3_RATES:
        if kbps <= limit:
            return min(rate, sampling_rate)
    return min(sampling_rate, 48000)


def _encoder_args(codec: str, kbps: float, sampling_rate: int) -> tuple[list[str], str]:
    bitrate = f"{int(round(kbps * 1000))}"
    if codec == "opus":
        return ["-c:a", "libopus", "-b:a", bitrate, "-vbr", "constrained", "-application", "audio"], "opus"
    if codec == "mp3":
        return ["-c:a", "libmp3lame", "-b:a", bitrate, "-ar", str(mp3_rate(kbps, sampling_rate))], "mp3"
    raise ValueError(f"unknown codec {codec!r}: one of {CODECS}")


def estimate_lag(reference: np.ndarray, estimate: np.ndarray, max_lag: int) -> int:
    """The lag `d` in [-max_lag, max_lag] that best lines `estimate[t + d]` up with `reference[t]` (FFT
    cross-correlation)."""
    n = len(reference) + len(estimate)
    size = 1 << int(np.ceil(np.log2(max(n, 2))))
    corr = np.fft.irfft(np.fft.rfft(estimate, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(corr[lags % size])])


def align(reference: np.ndarray, estimate: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """`estimate` shifted by the estimated lag and cut or zero-padded to the reference's length; and the lag."""
    ref_mono = np.atleast_2d(reference).mean(0)
    est_mono = np.atleast_2d(estimate).mean(0)
    lag = estimate_lag(ref_mono, est_mono, max_lag) if max_lag > 0 else 0
    length = reference.shape[-1]
    if lag > 0:
        estimate = estimate[..., lag:]
    elif lag < 0:
        estimate = np.concatenate([np.zeros(estimate.shape[:-1] + (-lag,), estimate.dtype), estimate], axis=-1)
    pad = [(0, 0)] * (estimate.ndim - 1) + [(0, max(0, length - estimate.shape[-1]))]
    return np.pad(estimate, pad)[..., :length], lag


def encode_decode(
    audio: np.ndarray, sampling_rate: int, codec: str, kbps: float, align_delay: bool = True
) -> tuple[np.ndarray, float]:
    """Round-trip mono `(T,)` or `(channels, T)` float audio through `codec` at `kbps`; `(decoded float32, true
    kbps)`."""
    ffmpeg = _ffmpeg()
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[0]
    interleaved = audio if audio.ndim == 1 else audio.T
    args, extension = _encoder_args(codec, kbps, sampling_rate)
    with tempfile.TemporaryDirectory(prefix="rvqgan-baseline-") as tmp:
        encoded = Path(tmp) / f"encoded.{extension}"
        quiet = [ffmpeg, *"-nostdin -hide_banner -loglevel error".split()]
        raw = f"-f f32le -ar {sampling_rate} -ac {channels}".split()
        bitexact = "-map_metadata -1 -fflags +bitexact -flags:a +bitexact".split()
        subprocess.run(
            [*quiet, "-y", *raw, "-i", "pipe:0", *bitexact, *args, str(encoded)],
            input=np.ascontiguousarray(interleaved).tobytes(),
            check=True,
            capture_output=True,
        )
        size = encoded.stat().st_size
        decoded = subprocess.run([*quiet, "-i", str(encoded), *raw, "pipe:1"], check=True, capture_output=True).stdout
    out = np.frombuffer(decoded, dtype=np.float32).reshape(-1, channels).T
    out = out[0] if audio.ndim == 1 else out
    max_lag = int(MAX_LAG_SECONDS * sampling_rate) if align_delay else 0
    out, _ = align(audio, out, max_lag)
    return out.astype(np.float32), float(kbps_on_disk(size, audio.shape[-1] / sampling_rate))
