"""DAC's training losses (`dac/nn/loss.py`) as differentiable torch functions of `(estimate, reference)`, each
(B, 1, T).

The waveform loss is plain `F.l1_loss`; the codebook and commitment losses come from the model's output.
"""

import torch
import torch.nn.functional as F
from rvqgan.evaluation.metrics import CLAMP_EPS, MEL_N_MELS, MEL_WINDOWS, STFT_WINDOWS, mel_filters, spectral_l1
from torch import nn


class MelSpectrogramLoss(nn.Module):
    """Multi-scale mel loss; the defaults are DAC's training config (7 scales, log10, clamp 1e-5, no magnitude term):
    `sum over scales of log_weight * L1(log10(clamp(mel)^pow)) + mag_weight * L1(mel)`."""

    def __init__(
        self,
        sampling_rate: int,
        n_mels=MEL_N_MELS,
        window_lengths=MEL_WINDOWS,
        clamp_eps: float = CLAMP_EPS,
        pow: float = 1.0,
        mag_weight: float = 0.0,
        log_weight: float = 1.0,
    ):
        super().__init__()
        self.window_lengths = tuple(window_lengths)
        self.weights = (clamp_eps, pow, mag_weight, log_weight)
        for window, mels in zip(self.window_lengths, n_mels):  # librosa's float32 filters, (n_mels, bins)
            filters = mel_filters(int(sampling_rate), window, mels).float()
            self.register_buffer(f"filters_{window}", filters, persistent=False)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return sum(
            spectral_l1(estimate, reference, w, getattr(self, f"filters_{w}"), *self.weights)
            for w in self.window_lengths
        )


class MultiScaleSTFTLoss(nn.Module):
    """Multi-scale STFT loss (class defaults, logged only in DAC's training):
    `sum over scales of log_weight * L1(log10(clamp(|X|)^pow)) + mag_weight * L1(|X|)`."""

    def __init__(
        self,
        window_lengths=STFT_WINDOWS,
        clamp_eps: float = CLAMP_EPS,
        pow: float = 2.0,
        mag_weight: float = 1.0,
        log_weight: float = 1.0,
    ):
        super().__init__()
        self.window_lengths = tuple(window_lengths)
        self.weights = (clamp_eps, pow, mag_weight, log_weight)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return sum(spectral_l1(estimate, reference, w, None, *self.weights) for w in self.window_lengths)


def discriminator_loss(fake_fmaps: list, real_fmaps: list) -> torch.Tensor:
    """Least-squares D loss on the logits: `sum over sub-discriminators of mean(D(fake)^2) + mean((1 - D(real))^2)`.

    `fake_fmaps` should come from the detached generator output."""
    loss = 0.0
    for fake, real in zip(fake_fmaps, real_fmaps):
        loss += torch.mean(fake[-1] ** 2)
        loss += torch.mean((1 - real[-1]) ** 2)
    return loss


def generator_losses(fake_fmaps: list, real_fmaps: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial, feature matching): `sum_d mean((1 - D(fake))^2)` and `sum_d sum_layers L1(fmap_fake, fmap_real)`
    over every feature map but the logits (real maps detached)."""
    adversarial, feature_matching = 0.0, 0.0
    for fake, real in zip(fake_fmaps, real_fmaps):
        adversarial += torch.mean((1 - fake[-1]) ** 2)
        for fake_map, real_map in zip(fake[:-1], real[:-1]):
            feature_matching += F.l1_loss(fake_map, real_map.detach())
    return adversarial, feature_matching
