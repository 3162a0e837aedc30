import math

import pytest
import torch
from rvqgan.modeling import RvqganConfig, RvqganModel, kbps_on_disk
from rvqgan.training.config import load_config


def test_defaults_are_the_paper_44khz_model():
    config = RvqganConfig()
    assert (config.sampling_rate, config.n_codebooks, config.codebook_size, config.codebook_dim) == (44100, 9, 1024, 8)
    assert (config.hop_length, config.hidden_size, config.upsampling_ratios) == (512, 1024, [8, 8, 4, 2])
    assert config.frame_rate == pytest.approx(86.13, abs=0.01)
    assert config.n_quantizers_to_kbps(9) == pytest.approx(7.752, abs=1e-3)
    assert config.quantizer_dropout == 0.5


def parameter_count(config: RvqganConfig) -> int:
    with torch.device("meta"):  # the shapes without the weights
        return sum(p.numel() for p in RvqganModel(config).parameters())


def test_default_model_has_the_dacmodel_parameter_count():
    assert parameter_count(RvqganConfig()) == 76_620_777


@pytest.mark.parametrize(
    "preset, rate, hop, n_codebooks, kbps",
    [
        ("44khz", 44100, 512, 9, 7.75),
        ("44khz-16kbps", 44100, 512, 18, 15.5),
        ("24khz", 24000, 320, 32, 24.0),
        ("16khz", 16000, 320, 12, 6.0),
    ],
)
def test_presets(preset, rate, hop, n_codebooks, kbps):
    config = RvqganConfig.from_preset(preset)
    assert (config.sampling_rate, config.hop_length, config.n_codebooks) == (rate, hop, n_codebooks)
    assert config.n_quantizers_to_kbps(n_codebooks) == pytest.approx(kbps, abs=0.01)
    assert config.kbps_to_n_quantizers(kbps) == n_codebooks


def test_16khz_preset_has_the_official_parameter_count():
    # descript/dac_16khz safetensors, weight norm removed
    assert parameter_count(RvqganConfig.from_preset("16khz")) == 74_141_697


def test_paper_bitrate_labels_map_to_their_codebook_counts():
    config = RvqganConfig()
    assert [config.kbps_to_n_quantizers(k) for k in (1.78, 2.67, 5.33, 8.0)] == [2, 3, 6, 9]
    assert all(config.kbps_to_n_quantizers(config.n_quantizers_to_kbps(n)) == n for n in range(1, 10))
    assert RvqganConfig.from_preset("44khz-16kbps").kbps_to_n_quantizers(16) == 18


def test_kbps_on_disk_counts_every_byte():
    assert kbps_on_disk(9755, 10.0) == pytest.approx(7.804)  # 10 s of 9 codebooks in an .rvq file
    assert kbps_on_disk(1000, 0.5) == 16.0


@pytest.mark.parametrize("kbps", [0.0, -1.0, 0.3, 9.0, math.inf, math.nan])
def test_unreachable_bitrates_are_refused(kbps):
    with pytest.raises(ValueError, match="out of range"):
        RvqganConfig().kbps_to_n_quantizers(kbps)


def test_tiny_preset_is_the_training_smoke_model():
    config = RvqganConfig.from_preset("tiny")
    assert (config.sampling_rate, config.hop_length, config.n_codebooks, config.codebook_size) == (16000, 32, 4, 64)
    assert load_config("tiny").model == {"preset": "tiny"}


def test_preset_overrides_and_unknown_preset():
    assert RvqganConfig.from_preset("24khz", n_codebooks=8).n_codebooks == 8
    with pytest.raises(ValueError, match="Unknown preset '48khz'"):
        RvqganConfig.from_preset("48khz")


@pytest.mark.parametrize(
    "field, value",
    [
        ("codebook_size", 1000),
        ("codebook_size", 0),
        ("downsampling_ratios", []),
        ("downsampling_ratios", [2, 0]),
        ("n_codebooks", 0),
        ("sampling_rate", -16000),
        ("quantizer_dropout", 1.5),
        ("decoder_hidden_size", 100),
        ("hidden_size", 0),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        RvqganConfig(**{field: value})


def test_save_and_load_round_trip(tmp_path):
    config = RvqganConfig.from_preset("44khz-16kbps")
    config.save_pretrained(tmp_path)
    loaded = RvqganConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert (loaded.hidden_size, loaded.hop_length) == (128, 512)
