"""Audio signals: resampling (soxr, one quality setting), ITU-R BS.1770 loudness and loudness normalisation.

`resample` and `RESAMPLE_QUALITY` come from `feature_extraction_rvqgan`, which ships alone as Hub remote code. The
loudness equals pyloudnorm's `Meter(rate).integrated_loudness` up to float rounding (the same K-weighting biquads,
400 ms gating blocks every 100 ms, -70 LUFS and relative gates), measured block by block so that audio of any length
fits in bounded memory. Reading and writing files: `audio_io`.
"""

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.signal
import soxr

from .feature_extraction_rvqgan import RESAMPLE_QUALITY, resample

TARGET_LUFS = -16.0  # DAC's `compress` normalisation
CHANNEL_WEIGHTS = [1.0, 1.0, 1.0, 1.41, 1.41]  # BS.1770 (L, R, C, Ls, Rs), as pyloudnorm; further channels weigh 1
ABSOLUTE_GATE = -70.0


class Resampler:
    """Float32 `(channels, n)` blocks resampled as they are pushed: what the pushes return, then `flush()`, together
    equal `resample` of the blocks' concatenation."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.channels, self.stream = channels, None
        if in_rate != out_rate:
            self.stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality=RESAMPLE_QUALITY)

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return block
        return np.ascontiguousarray(self.stream.resample_chunk(np.ascontiguousarray(block.T), last=last).T)

    def flush(self) -> np.ndarray:
        """The samples still held, once the input has ended."""
        return self.push(np.zeros((self.channels, 0), np.float32), last=True)


def resample_stream(blocks: Iterable[np.ndarray], in_rate: int, out_rate: int, channels: int) -> Iterator[np.ndarray]:
    """Float32 `(channels, n)` blocks resampled as they come: together, `resample` of their concatenation."""
    resampler = Resampler(in_rate, out_rate, channels)
    yield from map(resampler.push, blocks)
    if in_rate != out_rate:
        yield resampler.flush()


def mono_at(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """`(T,)` or `(channels, T)` audio -> mono `(T',)` at `target` Hz: the channels averaged, then resampled."""
    return resample(np.atleast_2d(audio).mean(0), rate, target)


def k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's K-weighting at `rate` as `(b, a)` biquads: a +4 dB high shelf at 1500 Hz (Q 1/sqrt 2), then a high
    pass at 38 Hz (Q 0.5), designed with the RBJ cookbook formulas as pyloudnorm designs them."""
    gain, w0, q = 10 ** (4.0 / 40.0), 2.0 * np.pi * (1500.0 / rate), 1 / np.sqrt(2)
    cos, alpha, root = np.cos(w0), np.sin(w0) / (2.0 * q), 2 * np.sqrt(gain)
    shelf_b = [
        gain * ((gain + 1) + (gain - 1) * cos + root * alpha),
        -2 * gain * ((gain - 1) + (gain + 1) * cos),
        gain * ((gain + 1) + (gain - 1) * cos - root * alpha),
    ]
    shelf_a = [
        (gain + 1) - (gain - 1) * cos + root * alpha,
        2 * ((gain - 1) - (gain + 1) * cos),
        (gain + 1) - (gain - 1) * cos - root * alpha,
    ]
    w0 = 2.0 * np.pi * (38.0 / rate)
    cos, alpha = np.cos(w0), np.sin(w0) / (2.0 * 0.5)
    pass_b, pass_a = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], [1 + alpha, -2 * cos, 1 - alpha]
    return [(np.array(b) / a[0], np.array(a) / a[0]) for b, a in ((shelf_b, shelf_a), (pass_b, pass_a))]


class LoudnessMeter:
    """Integrated loudness and peak of `(channels, samples)` audio given in consecutive blocks of any size; only the
    current gating block's K-weighted samples are held."""

    def __init__(self, rate: int, channels: int):
        self.rate, self.samples, self.peak = rate, 0, 0.0
        self.filters = [(b, a, np.zeros((channels, 2))) for b, a in k_weighting(rate)]
        self.weights = np.array([CHANNEL_WEIGHTS[c] if c < len(CHANNEL_WEIGHTS) else 1.0 for c in range(channels)])
        self.weighted, self.offset = None, 0  # K-weighted samples from position `offset` on
        self.energies = []  # (channels,) mean squares of the gating blocks done

    def block(self, j: int) -> tuple[int, int]:
        """Gating block j's samples [low, high), computed as pyloudnorm does."""
        return int(0.4 * (j * 0.25) * self.rate), int(0.4 * (j * 0.25 + 1) * self.rate)

    def add(self, audio: np.ndarray):
        """Measure the next `(channels, samples)` block."""
        self.peak = max(self.peak, float(np.abs(audio).max(initial=0.0)))
        weighted = audio
        for b, a, state in self.filters:
            filtered, state[:] = scipy.signal.lfilter(b, a, weighted, axis=-1, zi=state)
            weighted = filtered.astype(audio.dtype)
        self.weighted = weighted if self.weighted is None else np.concatenate([self.weighted, weighted], axis=1)
        self.samples += audio.shape[-1]
        while self.block(len(self.energies))[1] <= self.samples:
            self.energies.append(self.energy(*self.block(len(self.energies))))
        low = self.block(len(self.energies))[0]
        self.weighted, self.offset = self.weighted[:, low - self.offset :], low

    def energy(self, low: int, high: int) -> np.ndarray:
        """Mean squares (channels,) of the K-weighted samples [low, high) (cut at the end of the audio)."""
        return np.sum(np.square(self.weighted[:, low - self.offset : high - self.offset]), axis=1) / (0.4 * self.rate)

    def loudness(self) -> float:
        """Integrated loudness in LUFS of everything added so far (at least 400 ms)."""
        seconds = self.samples / self.rate
        n_blocks = int(np.round((seconds - 0.4) / (0.4 * 0.25))) + 1
        energies = self.energies[:n_blocks] + [self.energy(*self.block(j)) for j in range(len(self.energies), n_blocks)]
        energies = np.array(energies)  # (blocks, channels)
        with np.errstate(divide="ignore"):
            block_loudness = -0.691 + 10 * np.log10(energies @ self.weights)
            gated = energies[block_loudness >= ABSOLUTE_GATE]
            relative_gate = -0.691 + 10 * np.log10(gated.mean(0) @ self.weights) - 10 if len(gated) else np.nan
            kept = energies[(block_loudness > relative_gate) & (block_loudness > ABSOLUTE_GATE)]
            return float(-0.691 + 10 * np.log10(kept.mean(0) @ self.weights)) if len(kept) else float("-inf")

    def gain_db(self, target_lufs: float = TARGET_LUFS) -> float:
        """`normalization_gain_db` of the audio. Silence, and audio shorter than one 400 ms gating block, get 0 dB."""
        if self.samples < int(0.4 * self.rate) or self.peak == 0:
            return 0.0
        loudness = self.loudness()
        return normalization_gain_db(loudness, self.peak, target_lufs) if np.isfinite(loudness) else 0.0


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS of `(T,)` or `(channels, T)` audio of at least 400 ms (-inf for silence)."""
    audio = np.atleast_2d(audio)
    meter = LoudnessMeter(rate, audio.shape[0])
    meter.add(audio)
    return meter.loudness()


def normalization_gain_db(loudness: float, peak: float, target_lufs: float = TARGET_LUFS) -> float:
    """The gain in dB that brings audio at `loudness` LUFS to `target_lufs`, lowered so that its `peak` stays <= 1."""
    gain_db = target_lufs - loudness
    return float(gain_db - max(0.0, 20 * np.log10(peak) + gain_db))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """`audio` times `gain_db`, as float32."""
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)
