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
import torch.nn.functional as F
from rvqgan.feature_extraction.audio import mono_at
from transformers.audio_utils import mel_filter_bank

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


def _mono_tensors(reference, estimate) -> tuple[torch.Tensor, torch.Tensor]:
    """`_pair`, channels averaged: two float64 `(1, T)` tensors."""
    reference, estimate = _pair(reference, estimate)
    return torch.from_numpy(reference.mean(0, keepdims=True)), torch.from_numpy(estimate.mean(0, keepdims=True))


def stft_magnitude(audio: torch.Tensor, window_length: int) -> torch.Tensor:
    """|STFT| as audiotools computes it (hann, hop w/4, centred, reflect padding): (B, 1, T) or (B, T) ->
    (B, bins, frames). Input no longer than half a window is zero-padded first (reflect padding needs more)."""
    audio = audio.reshape(-1, audio.shape[-1])
    if audio.shape[-1] <= window_length // 2:
        audio = F.pad(audio, (0, window_length // 2 + 1 - audio.shape[-1]))
    window = torch.hann_window(window_length, dtype=torch.float64, device=audio.device).to(audio.dtype)
    spec = torch.stft(
        audio,
        n_fft=window_length,
        hop_length=window_length // 4,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()


def spectral_l1(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    window_length: int,
    filters: torch.Tensor | None = None,
    clamp_eps: float = CLAMP_EPS,
    pow: float = 1.0,
    mag_weight: float = 0.0,
    log_weight: float = 1.0,
) -> torch.Tensor:
    """One scale of DAC's spectral losses on (B, 1, T) or (B, T) audio: with S = |STFT|, or `filters @ |STFT|` for a
    mel scale (`filters` (n_mels, bins)), `log_weight * L1(log10(clamp(S)^pow)) + mag_weight * L1(S)`; a scalar."""
    x, y = stft_magnitude(estimate, window_length), stft_magnitude(reference, window_length)
    if filters is not None:
        x, y = filters @ x, filters @ y
    log_l1 = F.l1_loss(x.clamp(clamp_eps).pow(pow).log10(), y.clamp(clamp_eps).pow(pow).log10())
    return log_weight * log_l1 + mag_weight * F.l1_loss(x, y)


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
    reference, estimate = _mono_tensors(reference, estimate)
    scales = zip(n_mels, window_lengths)
    return float(
        sum(spectral_l1(estimate, reference, w, mel_filters(int(sampling_rate), w, m)).item() for m, w in scales)
    )


def stft_distance(reference, estimate, sampling_rate: int = 0, window_lengths=STFT_WINDOWS) -> float:
    """DAC's `MultiScaleSTFTLoss` (class defaults, as logged in training): per scale
    `L1(log10(clamp(|X|, 1e-5)^2)) + L1(|X|)`, summed. `sampling_rate` is unused (kept for a uniform signature)."""
    reference, estimate = _mono_tensors(reference, estimate)
    return float(sum(spectral_l1(estimate, reference, w, pow=2.0, mag_weight=1.0).item() for w in window_lengths))


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
