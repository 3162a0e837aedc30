"""Loudness normalisation as DAC's `compress` does it: -16 LUFS (ITU-R BS.1770), then peak <= 1, measured block by
block so that files of any length are measured in bounded memory."""

import numpy as np
import pyloudnorm
import scipy.signal

TARGET_LUFS = -16.0
CHANNEL_WEIGHTS = [1.0, 1.0, 1.0, 1.41, 1.41]  # BS.1770 (L, R, C, Ls, Rs), as pyloudnorm; further channels weigh 1
ABSOLUTE_GATE = -70.0


class LoudnessMeter:
    """Integrated loudness and peak of `(channels, samples)` audio given in consecutive blocks of any size.

    The loudness equals `pyloudnorm.Meter(rate).integrated_loudness` of the whole audio (its K-weighting filters,
    400 ms gating blocks every 100 ms, -70 LUFS and relative gates) up to float rounding; only the current gating
    block's samples are held.
    """

    def __init__(self, rate: int, channels: int):
        self.rate, self.samples, self.peak = rate, 0, 0.0
        filters = pyloudnorm.Meter(rate)._filters.values()  # the K-weighting stages
        self.filters = [(f.passband_gain, f.b, f.a, np.zeros((channels, max(len(f.a), len(f.b)) - 1))) for f in filters]
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
        for gain, b, a, state in self.filters:
            filtered, state[:] = scipy.signal.lfilter(b, a, weighted, axis=-1, zi=state)
            weighted = (gain * filtered).astype(audio.dtype)
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
        """The gain in dB that brings the audio to `target_lufs` with its peak at most 1. Silence, and audio shorter
        than one 400 ms gating block, get 0 dB."""
        if self.samples < int(0.4 * self.rate) or self.peak == 0:
            return 0.0
        loudness = self.loudness()
        if not np.isfinite(loudness):
            return 0.0
        gain_db = target_lufs - loudness
        return float(gain_db - max(0.0, 20 * np.log10(self.peak) + gain_db))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)
