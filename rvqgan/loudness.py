"""Loudness normalisation as DAC's `compress` does it: -16 LUFS (ITU-R BS.1770), then peak <= 1."""

import numpy as np
import pyloudnorm

TARGET_LUFS = -16.0


def normalization_gain_db(audio: np.ndarray, rate: int, target_lufs: float = TARGET_LUFS) -> float:
    """The gain in dB that brings `(channels, samples)` audio to `target_lufs` with its peak at most 1.

    Silence, and clips shorter than one 400 ms measurement block, get 0 dB.
    """
    if audio.shape[-1] < int(0.4 * rate) or not np.any(audio):
        return 0.0
    loudness = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    if not np.isfinite(loudness):
        return 0.0
    gain_db = target_lufs - loudness
    peak = np.abs(audio).max() * 10 ** (gain_db / 20)
    return float(gain_db - max(0.0, 20 * np.log10(peak)))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)
