"""The paper's objective metrics as plain functions of `(reference, estimate, sampling_rate)`.

All take float arrays, mono `(T,)` or `(channels, T)` (channels are averaged for the distances and scored separately
then averaged for SI-SDR), of equal length: the estimate is cut or zero-padded to the reference's length.

- `mel_distance`, `stft_distance`, `waveform_l1`, `si_sdr`: DAC's training losses with the training config
  (`dac/nn/loss.py`, `conf/base.yml`; SPEC section 3). `si_sdr` is SI-SDR in dB (higher is better), i.e. the negated
  `SISDRLoss` value that DAC's `evaluate.py` logs.
- `visqol`: ViSQOL v3 (pure-Python port `visqol-python`): audio mode at 48 kHz (NU-SVR model), speech mode at 16 kHz.
- `pesq_wb`, `stoi`: speech only, at 16 kHz (`pesq`, `pystoi`).
"""

from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

from feature_extraction.audio import mono_at

MEL_N_MELS = (5, 10, 20, 40, 80, 160, 320)
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
STFT_WINDOWS = (2048, 512)
CLAMP_EPS = 1e-5


def _require(module: str, package: str, metric: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"the {metric} metric needs the `{package}` package: pip install {package}") from error


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 `(channels, T)` of the reference's length."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if reference.shape[0] != estimate.shape[0]:
        raise ValueError(f"channel counts differ: {reference.shape[0]} vs {estimate.shape[0]}")
    length = reference.shape[-1]
    estimate = np.pad(estimate, ((0, 0), (0, max(0, length - estimate.shape[-1]))))[:, :length]
    return reference, estimate


def _magnitude(audio: np.ndarray, window: int) -> torch.Tensor:
    """|STFT| as audiotools computes it (hann, hop w/4, center with reflect padding): `(channels, frames, bins)`."""
    x = torch.from_numpy(audio)
    if x.shape[-1] <= window // 2:  # reflect padding needs more samples than the pad
        x = torch.nn.functional.pad(x, (0, window // 2 + 1 - x.shape[-1]))
    spec = torch.stft(
        x,
        n_fft=window,
        hop_length=window // 4,
        window=torch.hann_window(window, dtype=x.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs().transpose(1, 2)


@lru_cache(maxsize=64)
def mel_filters(sampling_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """The slaney mel filter bank of librosa and DAC (fmin 0, fmax sr/2), `(n_mels, n_fft // 2 + 1)` float64."""
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sampling_rate / 2,
        sampling_rate=sampling_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters.T)


def mel_distance(reference, estimate, sampling_rate: int, n_mels=MEL_N_MELS, window_lengths=MEL_WINDOWS) -> float:
    """DAC's `MelSpectrogramLoss` with the training config: `sum over scales of L1(log10(clamp(mel, 1e-5)))`."""
    reference, estimate = _pair(reference, estimate)
    reference, estimate = reference.mean(0, keepdims=True), estimate.mean(0, keepdims=True)
    total = 0.0
    for mels, window in zip(n_mels, window_lengths):
        fb = mel_filters(int(sampling_rate), window, mels)
        mel_x = _magnitude(estimate, window) @ fb.T
        mel_y = _magnitude(reference, window) @ fb.T
        total += (mel_x.clamp(min=CLAMP_EPS).log10() - mel_y.clamp(min=CLAMP_EPS).log10()).abs().mean().item()
    return float(total)


def stft_distance(reference, estimate, sampling_rate: int = 0, window_lengths=STFT_WINDOWS) -> float:
    """DAC's `MultiScaleSTFTLoss` (class defaults, as logged in training): per scale
    `L1(log10(clamp(|X|, 1e-5)^2)) + L1(|X|)`, summed. `sampling_rate` is unused (kept for a uniform signature)."""
    reference, estimate = _pair(reference, estimate)
    reference, estimate = reference.mean(0, keepdims=True), estimate.mean(0, keepdims=True)
    total = 0.0
    for window in window_lengths:
        mag_x, mag_y = _magnitude(estimate, window), _magnitude(reference, window)
        log_l1 = (mag_x.clamp(min=CLAMP_EPS).pow(2).log10() - mag_y.clamp(min=CLAMP_EPS).pow(2).log10()).abs().mean()
        total += log_l1.item() + (mag_x - mag_y).abs().mean().item()
    return float(total)


def waveform_l1(reference, estimate, sampling_rate: int = 0) -> float:
    """Mean absolute sample difference (DAC's `waveform/loss`)."""
    reference, estimate = _pair(reference, estimate)
    return float(np.abs(reference - estimate).mean())


def si_sdr(reference, estimate, sampling_rate: int = 0, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB with zero-mean signals (higher is better); the negated `SISDRLoss` of audiotools.

    Agrees with torchmetrics' `scale_invariant_signal_distortion_ratio(estimate, reference, zero_mean=True)` (tested).
    Multichannel input: the mean over channels.
    """
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean(-1, keepdims=True)
    estimate = estimate - estimate.mean(-1, keepdims=True)
    scale = ((estimate * reference).sum(-1, keepdims=True) + eps) / ((reference**2).sum(-1, keepdims=True) + eps)
    target = scale * reference
    noise = estimate - target
    ratio = ((target**2).sum(-1) + eps) / ((noise**2).sum(-1) + eps)
    return float(np.mean(10 * np.log10(ratio)))


_VISQOL_APIS: dict = {}


def visqol(reference, estimate, sampling_rate: int, mode: str = "audio") -> float:
    """ViSQOL v3 MOS-LQO (1..5, higher is better): `mode="audio"` at 48 kHz or `"speech"` at 16 kHz (resampled with
    soxr)."""
    api_module = _require("visqol", "visqol-python", "visqol")
    if mode not in ("audio", "speech"):
        raise ValueError(f"mode must be 'audio' or 'speech', not {mode!r}")
    if mode not in _VISQOL_APIS:
        api = api_module.VisqolApi()
        api.create(mode=mode, use_lattice_model=False) if mode == "speech" else api.create(mode=mode)
        _VISQOL_APIS[mode] = api
    target = 48000 if mode == "audio" else 16000
    reference, estimate = _pair(reference, estimate)
    ref, est = mono_at(reference, sampling_rate, target), mono_at(estimate, sampling_rate, target)
    return float(_VISQOL_APIS[mode].measure_from_arrays(ref, est, target).moslqo)


def pesq_wb(reference, estimate, sampling_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO at 16 kHz (about 1.0..4.64, higher is better); speech only."""
    pesq = _require("pesq", "pesq", "pesq_wb")
    reference, estimate = _pair(reference, estimate)
    ref, est = mono_at(reference, sampling_rate, 16000), mono_at(estimate, sampling_rate, 16000)
    return float(pesq.pesq(16000, ref, est, "wb"))


def stoi(reference, estimate, sampling_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (0..1, higher is better) at 16 kHz (pystoi resamples to 10 kHz inside)."""
    pystoi = _require("pystoi", "pystoi", "stoi")
    reference, estimate = _pair(reference, estimate)
    ref, est = mono_at(reference, sampling_rate, 16000), mono_at(estimate, sampling_rate, 16000)
    return float(pystoi.stoi(ref, est, 16000, extended=extended))


# name -> (function, higher is better, speech only)
METRICS = {
    "mel": (mel_distance, False, False),
    "stft": (stft_distance, False, False),
    "waveform": (waveform_l1, False, False),
    "si_sdr": (si_sdr, True, False),
    "visqol": (visqol, True, False),
    "visqol_speech": (lambda r, e, sr: visqol(r, e, sr, mode="speech"), True, True),
    "pesq_wb": (pesq_wb, True, True),
    "stoi": (stoi, True, True),
}
