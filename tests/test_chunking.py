import math

import pytest
import torch
from conftest import tiny_model
from rvqgan.modeling import RvqganConfig, RvqganModel

from rvqgan import chunking
from rvqgan.chunking import decode_chunked, encode_chunked, iter_decode, receptive_field

RATIOS = [[2, 4, 4], [2, 5], [3, 5, 2]]


pytestmark = pytest.mark.usefixtures("one_thread")


def audio(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t) * torch.sin(2 * math.pi * 0.7 * t)
    return (tone + 0.1 * torch.randn(batch, 1, samples, generator=generator)).clamp(-1, 1)


def whole_codes(model, x, n_quantizers=None):
    with torch.inference_mode():
        return model.encode(x, n_quantizers=n_quantizers).audio_codes


def whole_audio(model, codes):
    with torch.inference_mode():
        return model.decode(audio_codes=codes).audio_values


def test_receptive_field_presets():
    for preset in ("44khz", "24khz", "16khz"):
        with torch.device("meta"):  # the geometry without the weights
            model = RvqganModel(RvqganConfig.from_preset(preset))
        assert receptive_field(model) == (8, 10)


@pytest.mark.parametrize("ratios", RATIOS)
def test_receptive_field_matches_measurement(ratios):
    """Perturb every sample of one frame (encoder) or one latent frame (decoder) in float64: the furthest frame that
    changes at all is exactly the computed context, so the formula neither under- nor over-estimates."""
    model = tiny_model(downsampling_ratios=ratios).double()
    hop, frames, centre = model.config.hop_length, 80, 40
    encoder_frames, decoder_frames = receptive_field(model)

    batch = 0.1 * torch.randn(1, 1, frames * hop, dtype=torch.float64).repeat(hop + 1, 1, 1)
    for offset in range(hop):
        batch[offset + 1, 0, centre * hop + offset] += 1.0
    with torch.no_grad():
        latents = model.encoder(batch)
    changed = (latents[1:] != latents[:1]).any(1).nonzero()[:, 1]
    assert (changed - centre).abs().max().item() == encoder_frames

    latents = torch.randn(1, model.config.hidden_size, frames, dtype=torch.float64).repeat(2, 1, 1)
    latents[1, :, centre] += 1.0
    with torch.no_grad():
        waveform = model.decoder(latents)
    changed = (waveform[1] != waveform[0]).flatten().nonzero()[:, 0] // hop
    assert (changed - centre).abs().max().item() == decoder_frames


@pytest.mark.parametrize("ratios", RATIOS)
@pytest.mark.parametrize("extra", [0, 7])  # a hop multiple or not
def test_chunked_codes_equal_whole_file(ratios, extra):
    model = tiny_model(seed=len(ratios), downsampling_ratios=ratios)
    hop = model.config.hop_length
    x = audio(2, 150 * hop + extra)
    expected = whole_codes(model, x, n_quantizers=3)
    assert expected.shape == (2, 3, math.ceil(x.shape[-1] / hop))
    context = receptive_field(model)[0]
    for window in (1, 5, context - 1, 40, 149, 1000):
        codes = encode_chunked(model, x, n_quantizers=3, window_frames=window)
        assert codes.dtype == torch.long and codes.shape == expected.shape
        assert (codes == expected).float().mean() >= 0.999, window


@pytest.mark.parametrize("ratios", RATIOS)
@pytest.mark.parametrize("frames", [1, 3, 150])
def test_chunked_decode_equals_whole_file(ratios, frames):
    model = tiny_model(seed=1, downsampling_ratios=ratios)
    hop, context = model.config.hop_length, receptive_field(model)[1]
    codes = torch.randint(model.config.codebook_size, (2, model.config.n_codebooks, frames))
    expected = whole_audio(model, codes)
    for window in (1, 7, context - 1, 64):
        decoded = decode_chunked(model, codes, window_frames=window)
        assert decoded.shape == (2, frames * hop)
        assert (decoded - expected).abs().max() <= 1e-4, window
        edge = min(context, frames) * hop  # the file's first and last context frames, where its zero padding shows
        assert (decoded[..., :edge] - expected[..., :edge]).abs().max() <= 1e-4
        assert (decoded[..., -edge:] - expected[..., -edge:]).abs().max() <= 1e-4
    blocks = list(iter_decode(model, codes, window_frames=64))
    assert [block.shape[-1] for block in blocks] == [min(64, frames - start) * hop for start in range(0, frames, 64)]
    assert torch.equal(torch.cat(blocks, -1), decoded)


def test_context_is_necessary(monkeypatch):
    """With no context, windows see zeros instead of their neighbours: codes and audio differ at window edges."""
    model = tiny_model()
    hop, window = model.config.hop_length, 20
    x = audio(1, 200 * hop)
    codes = whole_codes(model, x)
    monkeypatch.setattr(chunking, "receptive_field", lambda model: (0, 0))
    mismatched = (encode_chunked(model, x, window_frames=window) != codes).any(1)[0].nonzero()[:, 0]
    assert len(mismatched) > 20
    distance_to_edge = torch.minimum(mismatched % window, window - 1 - mismatched % window)
    assert distance_to_edge.min() == 0 and distance_to_edge.float().mean() < window / 4
    assert (decode_chunked(model, codes, window_frames=window) - whole_audio(model, codes)).abs().max() > 1e-2


def test_progress_outputs_and_errors():
    model = tiny_model()
    calls = []
    codes = encode_chunked(
        model, audio(1, 100 * 32), window_frames=30, progress=lambda *done_total: calls.append(done_total)
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    decoded = decode_chunked(model, codes, progress=True)
    assert not codes.is_inference() and not decoded.is_inference()  # ordinary tensors: callers may modify them
    assert not torch.is_inference_mode_enabled()
    with pytest.raises(ValueError, match="empty"):
        encode_chunked(model, torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match="window_frames"):
        decode_chunked(model, torch.zeros(1, 4, 5, dtype=torch.long), window_frames=0)


@pytest.mark.slow
def test_ten_minutes_of_audio():
    """10 min at 16 kHz through a 4-channel model with 2 s windows: right length, and the first and last frames equal
    a whole encode of the file's first and last seconds (which see the same file edges)."""
    model = tiny_model(encoder_hidden_size=4, decoder_hidden_size=16)
    hop, context = model.config.hop_length, receptive_field(model)[0]
    x = audio(1, 600 * 16000 + 5)
    codes = encode_chunked(model, x, window_frames=1000)
    decoded = decode_chunked(model, codes, window_frames=1000)
    assert codes.shape == (1, 4, math.ceil(x.shape[-1] / hop)) and decoded.shape == (1, codes.shape[-1] * hop)
    head, tail = 500, 500
    assert (
        codes[..., :head] == whole_codes(model, x[..., : (head + context) * hop])[..., :head]
    ).float().mean() >= 0.999
    start = (codes.shape[-1] - tail - context) * hop
    assert (codes[..., -tail:] == whole_codes(model, x[..., start:])[..., -tail:]).float().mean() >= 0.999
    assert (
        decoded[..., : hop * head] - whole_audio(model, codes[..., : head + 20])[..., : hop * head]
    ).abs().max() <= 1e-4
