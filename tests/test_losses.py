from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rvqgan.evaluation.metrics import mel_distance, stft_distance
from rvqgan.training.losses import MelSpectrogramLoss, MultiScaleSTFTLoss, discriminator_loss, generator_losses
from safetensors.torch import load_file

FIXTURE = Path(__file__).parent / "fixtures" / "descript_training" / "outputs.safetensors"


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE)


def noisy_pair(batch: int = 1, length: int = 6000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    reference = 0.3 * torch.randn(batch, 1, length, generator=generator)
    return reference + 0.05 * torch.randn(batch, 1, length, generator=generator), reference


@pytest.mark.parametrize("rate", [44100, 24000])
def test_mel_loss_matches_descript(expected, rate):
    loss = MelSpectrogramLoss(rate)(expected["fake"], expected["real"])
    torch.testing.assert_close(loss, expected[f"mel_loss_{rate}"], rtol=1e-6, atol=0)


def test_stft_and_waveform_losses_match_descript(expected):
    stft = MultiScaleSTFTLoss()(expected["fake"], expected["real"])
    torch.testing.assert_close(stft, expected["stft_loss"], rtol=1e-6, atol=0)
    torch.testing.assert_close(F.l1_loss(expected["fake"], expected["real"]), expected["waveform_loss"], rtol=0, atol=0)


@pytest.mark.parametrize("rate", [44100, 16000])
def test_losses_equal_the_evaluation_metrics(rate):
    estimate, reference = noisy_pair()
    mel = MelSpectrogramLoss(rate)(estimate, reference).item()
    stft = MultiScaleSTFTLoss()(estimate, reference).item()
    assert mel == pytest.approx(mel_distance(reference[0, 0].numpy(), estimate[0, 0].numpy(), rate), rel=1e-6)
    assert stft == pytest.approx(stft_distance(reference[0, 0].numpy(), estimate[0, 0].numpy()), rel=1e-6)


def test_spectral_losses_are_batched_means_and_differentiable():
    estimate, reference = noisy_pair(batch=3)
    estimate.requires_grad_()
    for loss_fn in (MelSpectrogramLoss(44100), MultiScaleSTFTLoss()):
        batched = loss_fn(estimate, reference)
        items = torch.stack([loss_fn(estimate[i : i + 1], reference[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, items.mean())
        (grad,) = torch.autograd.grad(batched, estimate)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_spectral_losses_are_zero_for_identical_inputs():
    _, reference = noisy_pair(batch=2)
    assert MelSpectrogramLoss(44100)(reference, reference).item() == 0
    assert MultiScaleSTFTLoss()(reference, reference).item() == 0


def fmaps(logit: float, feature: float) -> list:
    """Two sub-discriminators' feature maps: two constant features then constant logits."""
    return [[torch.full((2, 3), feature), torch.full((2, 4), feature), torch.full((2, 1), logit)] for _ in range(2)]


def test_gan_losses_by_hand():
    assert discriminator_loss(fmaps(0.0, 0.0), fmaps(1.0, 0.0)).item() == 0  # a perfect discriminator
    assert discriminator_loss(fmaps(0.5, 0.0), fmaps(0.0, 0.0)).item() == pytest.approx(2 * (0.25 + 1))
    adversarial, feature_matching = generator_losses(fmaps(0.5, 1.0), fmaps(1.0, 1.0))
    assert adversarial.item() == pytest.approx(2 * 0.25)
    assert feature_matching.item() == 0  # identical features
    _, feature_matching = generator_losses(fmaps(0.5, 1.0), fmaps(1.0, -0.5))
    assert feature_matching.item() == pytest.approx(2 * 2 * 1.5)  # a sum over sub-discriminators and layers


def test_feature_matching_does_not_train_through_the_real_features():
    fake = [[torch.ones(2, 3, requires_grad=True), torch.zeros(2, 1)]]
    real = [[torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 1)]]
    _, feature_matching = generator_losses(fake, real)
    feature_matching.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None
