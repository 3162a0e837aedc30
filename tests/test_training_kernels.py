"""The training step's fast pieces equal the plain ones: the fused Snake kernels, one discriminator pass over the fake
and real batches together."""

import functools
from pathlib import Path

import pytest
import torch
from rvqgan.training.config import load_config
from rvqgan.training.discriminators import RvqganDiscriminator
from rvqgan.training.losses import discriminator_loss
from rvqgan.training.train import Trainer, split_fmaps

TINY = str(Path(__file__).parent.parent / "training" / "configs" / "tiny.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 3, 50), (1, 16, 7), (4, 8, 1000)])
def test_fused_snake_equals_autograd_through_the_layer(shape):
    from rvqgan.modeling.layers_rvqgan import snake
    from rvqgan.training.snake import FusedSnake

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


@pytest.mark.slow
def test_trainer_uses_the_fused_snake_where_its_kernels_are_right(tmp_path):
    """Fused where both compiled kernels passed their check; the eager `snake` where one failed it (as with
    ATEN_CPU_CAPABILITY=avx2 on an AVX-512 machine), never a wrong kernel."""
    from rvqgan.modeling.layers_rvqgan import Snake1d, snake
    from rvqgan.training.snake import FusedSnake, kernels, snake_backward

    trainer = Trainer(load_config(TINY, [f"output_dir={tmp_path}", "data.validation=[]"]))
    forward, backward = kernels(torch.device("cpu"), torch.float32, torch.float32)
    right = forward is not snake and backward is not snake_backward
    in_use = {m.kernel for m in trainer.generator.modules() if isinstance(m, Snake1d)}
    assert in_use == {FusedSnake.apply if right else snake}


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


@pytest.fixture
def miscompiling(monkeypatch):
    """TorchInductor's compile replaced by one whose kernels are off by 1 % (the graph itself runs: no compilation),
    with empty kernel caches of their own for the test."""
    from rvqgan.training import snake

    def wrong(graph, inputs, **options):
        def kernel(*args):
            out = graph(*args)
            return out * 1.01 if torch.is_tensor(out) else type(out)(t * 1.01 for t in out)

        return kernel

    monkeypatch.setattr(snake, "kernels", functools.cache(snake.kernels.__wrapped__))
    monkeypatch.setattr(torch._inductor, "compile", wrong)


def test_a_wrong_training_kernel_falls_back_to_the_eager_snake(miscompiling):
    from conftest import tiny_model
    from rvqgan.modeling.layers_rvqgan import Snake1d, snake
    from rvqgan.training.snake import use_fused_snake

    model = tiny_model()
    with pytest.warns(UserWarning, match="results are wrong on a probe"):
        assert use_fused_snake(model) is False
    assert {m.kernel for m in model.modules() if isinstance(m, Snake1d)} == {snake}
