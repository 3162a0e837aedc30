"""Same weights, same input: RvqganModel against transformers' DacModel and the descript-audio-codec package."""

from pathlib import Path

import pytest
import torch
from conftest import TINY, perturbed
from rvqgan.modeling import ModelLoadError, RvqganConfig, RvqganModel
from rvqgan.modeling.convert import from_dac, from_descript, to_dac
from rvqgan.modeling.convert import main as convert
from safetensors.torch import load_file
from transformers import DacConfig, DacModel

FIXTURES = Path(__file__).parent / "fixtures" / "descript"
DAC_FIELDS = {k: v for k, v in TINY.items()}


def dac_model(**config) -> DacModel:
    torch.manual_seed(0)
    return perturbed(DacModel(DacConfig(**config))).eval()


def assert_same_outputs(ours: RvqganModel, dac: DacModel, audio: torch.Tensor, audio_tolerance: float):
    with torch.no_grad():
        for n_quantizers in (None, 2):
            expected = dac.encode(audio, n_quantizers=n_quantizers)
            got = ours.encode(audio, n_quantizers=n_quantizers)
            assert torch.equal(got.audio_codes, expected.audio_codes)
            assert torch.allclose(got.quantized_representation, expected.quantized_representation, atol=1e-5)
            assert torch.allclose(got.projected_latents, expected.projected_latents, atol=1e-5)
        expected_audio = dac(audio).audio_values
        got_audio = ours(audio).audio_values
    assert got_audio.shape == expected_audio.shape == (audio.shape[0], audio.shape[-1])
    assert (got_audio - expected_audio).abs().max() <= audio_tolerance
    assert got_audio.abs().max() > 1e-3  # not a silent output


@pytest.mark.parametrize("batch", [1, 3])
def test_tiny_matches_dacmodel_both_directions(batch):
    dac = dac_model(**DAC_FIELDS)
    audio = 0.3 * torch.randn(batch, 1, 32 * 40, generator=torch.Generator().manual_seed(1))
    ours = from_dac(dac)
    assert_same_outputs(ours, dac, audio, 1e-5)
    back = to_dac(ours)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), dac.state_dict().values()))
    assert_same_outputs(ours, back, audio, 1e-5)


def test_full_44khz_matches_dacmodel_on_one_second():
    dac = dac_model(sampling_rate=44100)
    ours = from_dac(dac)
    assert sum(p.numel() for p in ours.parameters()) == 76_620_777
    audio = 0.3 * torch.randn(1, 1, 87 * 512, generator=torch.Generator().manual_seed(2))  # 1.01 s
    assert_same_outputs(ours, dac, audio, 1e-5)
    assert_same_outputs(ours, to_dac(ours), audio, 1e-5)


def dacmodel_user_code(model, audio: torch.Tensor) -> dict:
    """Calls written for transformers' `DacModel`, positional arguments included."""
    with torch.no_grad():
        encoded = model.encode(audio)
        return {
            "encode": encoded,
            "encode 2 codebooks": model.encode(audio, 2),
            "decode codes": model.decode(audio_codes=encoded.audio_codes),
            "decode quantized_representation": model.decode(encoded.quantized_representation),
            "forward": model(audio),
            "encode tuple": model.encode(audio, None, False),
            "decode tuple": model.decode(encoded.quantized_representation, None, False),
            "forward tuple": model(audio, return_dict=False),
        }


def assert_close(got: torch.Tensor, expected: torch.Tensor, name: str):
    if got.dim() == 0:  # our `loss` is the batch's; DacModel's repeats it per item
        got = got.expand_as(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, name
    assert torch.allclose(got, expected, atol=1e-5), name


def test_code_written_for_dacmodel_runs_unchanged():
    dac = dac_model(**DAC_FIELDS)
    audio = 0.3 * torch.randn(2, 1, 32 * 40, generator=torch.Generator().manual_seed(3))
    expected, got = dacmodel_user_code(dac, audio), dacmodel_user_code(from_dac(dac), audio)
    for call, output in expected.items():
        if isinstance(output, tuple):
            assert isinstance(got[call], tuple) and len(got[call]) == len(output), call
            for i, (a, b) in enumerate(zip(got[call], output)):
                assert_close(a, b, f"{call}[{i}]")
        else:
            names = list(output.keys())
            assert list(got[call].keys())[: len(names)] == names, call  # then our extras
            for name in names:
                assert_close(got[call][name], output[name], f"{call}.{name}")


def test_converter_round_trip_dac_rvqgan_dac_is_bit_identical(tmp_path):
    dac_model(**DAC_FIELDS).save_pretrained(tmp_path / "dac")
    convert(["--from", "dac", str(tmp_path / "dac"), str(tmp_path / "rvqgan")])
    convert(["--to", "dac", str(tmp_path / "rvqgan"), str(tmp_path / "dac2")])
    assert (tmp_path / "dac" / "model.safetensors").read_bytes() == (
        tmp_path / "dac2" / "model.safetensors"
    ).read_bytes()
    assert (
        DacConfig.from_pretrained(tmp_path / "dac").to_dict() == DacConfig.from_pretrained(tmp_path / "dac2").to_dict()
    )
    assert RvqganConfig.from_pretrained(tmp_path / "rvqgan").model_type == "rvqgan"
    assert (tmp_path / "dac2" / "preprocessor_config.json").exists()


def test_to_dac_refuses_a_latent_size_dacmodel_cannot_express():
    with pytest.raises(ValueError, match="hidden_size"):
        to_dac(RvqganModel(RvqganConfig(**{**TINY, "hidden_size": 24})))


@pytest.mark.parametrize("name", ["tiny44", "tiny16"])
def test_descript_checkpoint_matches_descript_package(name, tmp_path):
    convert(["--from", "descript", str(FIXTURES / f"{name}.pth"), str(tmp_path / name)])
    model = RvqganModel.from_pretrained(tmp_path / name).eval()
    io = load_file(FIXTURES / f"{name}_io.safetensors")
    audio = io["input_values"]
    with torch.no_grad():
        for suffix, n_quantizers in (("", None), ("_nq2", 2)):
            encoded = model.encode(audio, n_quantizers=n_quantizers)
            assert torch.equal(encoded.audio_codes, io["audio_codes" + suffix])
            for key in ("quantized_representation", "projected_latents", "commitment_loss", "codebook_loss"):
                assert torch.allclose(getattr(encoded, key), io[key + suffix], atol=1e-5), key
            decoded = model.decode(audio_codes=encoded.audio_codes).audio_values[:, None]  # (B, 1, T) as DAC's
            reference = io["audio_values" + suffix]
            hop = model.config.hop_length
            if reference.shape[-1] == audio.shape[-1]:
                assert (decoded - reference).abs().max() <= 1e-5
            else:  # stride-5 models: DAC drops the last 8 samples; ours keeps them, the rest is identical
                assert (name, reference.shape[-1], decoded.shape[-1]) == (
                    "tiny16",
                    audio.shape[-1] - 8,
                    audio.shape[-1],
                )
                keep = reference.shape[-1] - 2 * hop
                assert (decoded[..., :keep] - reference[..., :keep]).abs().max() <= 1e-5


def test_descript_converter_refuses_mismatched_keys(tmp_path):
    checkpoint = torch.load(FIXTURES / "tiny44.pth", weights_only=True)
    del checkpoint["state_dict"]["decoder.model.0.bias"]
    checkpoint["state_dict"]["decoder.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(
        ModelLoadError, match=r"bad.pth does not fit the RvqganModel: 1 missing \(decoder.conv1.bias\); 1 unexpected"
    ):
        from_descript(tmp_path / "bad.pth")


def test_descript_converter_cli_fails_cleanly_on_a_non_checkpoint(tmp_path, capsys):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(SystemExit) as exit_info:
        convert(["--from", "descript", str(tmp_path / "other.pth"), str(tmp_path / "out")])
    assert "not a DAC checkpoint" in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()
