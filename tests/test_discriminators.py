import importlib.util
import json
from pathlib import Path

import pytest
import torch
from rvqgan.training.discriminators import RvqganDiscriminator, from_descript_state_dict
from rvqgan.training.losses import discriminator_loss, generator_losses
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
# small enough for milliseconds, every sub-discriminator kind present
LIGHT = dict(
    sampling_rate=16000,
    periods=(2, 3),
    fft_sizes=(512, 128),
    rates=(2,),
    period_channels=(4, 8, 16, 16, 16),
    stft_channels=4,
)


def load_script():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_descript_training_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def descript():
    """The seeded discriminator (DAC's channels, MSD at rates 1 and 2), its outputs on the fixture pair, DAC's."""
    expected = load_file(FIXTURES / "descript_training" / "outputs.safetensors")
    discriminator = load_script().seeded_discriminator()
    with torch.no_grad():
        fake, real = discriminator(expected["fake"]), discriminator(expected["real"])
    return fake, real, expected


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_is_the_papers_final_discriminator():
    with torch.device("meta"):
        discriminator = RvqganDiscriminator()
    counts = [parameter_count(d) for d in discriminator.discriminators]
    assert [type(d).__name__ for d in discriminator.discriminators] == ["MPD"] * 5 + ["MRD"] * 3
    assert counts == [8_221_154] * 5 + [471_330] * 3  # 8.22M per MPD, 0.47M per MRD
    assert parameter_count(discriminator) == 42_519_760


def test_feature_maps_match_descript(descript):
    _, real, expected = descript
    assert [len(fmap) for fmap in real] == [6] * 5 + [7] * 2 + [26] * 3
    worst = 0.0
    for i, fmap in enumerate(real):
        for j, x in enumerate(fmap):
            assert list(x.shape) == expected[f"d{i}_{j}_shape"].tolist()
            flat = x.flatten()
            sample = flat[:: max(1, flat.numel() // 256)]
            worst = max(worst, (sample - expected[f"d{i}_{j}_sample"]).abs().max().item())
            torch.testing.assert_close(flat.double().sum(), expected[f"d{i}_{j}_sum"], rtol=1e-5, atol=1e-3)
            torch.testing.assert_close(flat.double().abs().sum(), expected[f"d{i}_{j}_abssum"], rtol=1e-6, atol=1e-3)
    assert worst < 1e-5  # bit-exact on the machine that made the fixtures


def test_gan_losses_match_descript(descript):
    fake, real, expected = descript
    adversarial, feature_matching = generator_losses(fake, real)
    torch.testing.assert_close(discriminator_loss(fake, real), expected["disc_loss"], rtol=1e-6, atol=0)
    torch.testing.assert_close(adversarial, expected["adv_loss"], rtol=1e-6, atol=0)
    torch.testing.assert_close(feature_matching, expected["feat_loss"], rtol=1e-6, atol=0)


def test_descript_state_dict_names_map_onto_ours():
    shapes = json.loads((FIXTURES / "descript_training" / "state_dict_shapes.json").read_text())
    with torch.device("meta"):
        ours = RvqganDiscriminator(rates=(1, 2)).state_dict()
    converted = from_descript_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)
    discriminator = RvqganDiscriminator(**LIGHT)
    fake = (0.3 * torch.randn(2, 1, 2000)).requires_grad_()
    real = 0.3 * torch.randn(2, 1, 2000)
    fake_fmaps, real_fmaps = discriminator(fake), discriminator(real)
    adversarial, feature_matching = generator_losses(fake_fmaps, real_fmaps)
    (discriminator_loss(fake_fmaps, real_fmaps) + adversarial + feature_matching).backward()
    assert fake.grad.abs().sum() > 0
    for name, parameter in discriminator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_gain_and_dc_offset_do_not_change_the_output():
    torch.manual_seed(0)
    discriminator = RvqganDiscriminator(**LIGHT).eval()
    audio = 0.3 * torch.randn(1, 1, 2000)
    with torch.no_grad():
        for a, b in zip(discriminator(audio), discriminator(3 * audio + 0.1)):
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    discriminator = RvqganDiscriminator(**LIGHT).eval()
    discriminator.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["period_channels"] == [4, 8, 16, 16, 16]
    loaded = RvqganDiscriminator.from_pretrained(tmp_path).eval()
    state, loaded_state = discriminator.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    audio = 0.3 * torch.randn(1, 1, 2000)
    with torch.no_grad():
        for a, b in zip(discriminator(audio), loaded(audio)):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
