"""The training step's fast pieces equal the plain ones: the fused Snake kernels, one discriminator pass over the fake
and real batches together."""

from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.discriminators import RvqganDiscriminator
from training.losses import discriminator_loss
from training.train import Trainer, split_fmaps

TINY = str(Path(__file__).parent.parent / "training" / "configs" / "tiny.yaml")


@pytest.mark.parametrize("shape", [(2, 3, 50), (1, 16, 7), (4, 8, 1000)])
def test_fused_snake_equals_autograd_through_the_layer(shape):
    from modeling_rvqgan.layers_rvqgan import snake
    from training.snake import FusedSnake

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
    alpha = torch.rand(1, shape[1], 1, generator=generator, dtype=torch.float64) * 2 + 0.05
    grad = torch.randn(shape, generator=generator, dtype=torch.float64)
    reference = [x.clone().requires_grad_(), alpha.clone().requires_grad_()]
    expected = snake(*reference)
    expected_grads = torch.autograd.grad(expected, reference, grad)
    fused = [x.float().requires_grad_(), alpha.float().requires_grad_()]
    out = FusedSnake.apply(*fused)
    grads = torch.autograd.grad(out, fused, grad.float())
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_trainer_on_cpu_uses_the_fused_snake(tmp_path):
    from modeling_rvqgan.layers_rvqgan import Snake1d
    from training.snake import FusedSnake

    trainer = Trainer(load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]"]))
    kernels = {m.kernel for m in trainer.generator.modules() if isinstance(m, Snake1d)}
    assert kernels == {FusedSnake.apply}


def test_one_discriminator_pass_over_fake_and_real_equals_two():
    torch.manual_seed(0)
    discriminator = RvqganDiscriminator(period_channels=(4, 8, 8, 8, 8), stft_channels=4)
    fake, real = 0.1 * torch.randn(2, 1, 4096), 0.1 * torch.randn(2, 1, 4096)
    one = split_fmaps(discriminator(torch.cat([fake, real])), len(fake))
    two = discriminator(fake), discriminator(real)
    for fmaps_one, fmaps_two in zip(one, two):
        for maps_one, maps_two in zip(fmaps_one, fmaps_two):
            for a, b in zip(maps_one, maps_two, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(discriminator_loss(*one), discriminator_loss(*two))
