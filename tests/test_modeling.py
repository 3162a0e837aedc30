import pytest
import torch
from conftest import tiny_model
from rvqgan.feature_extraction import RvqganFeatureExtractor
from rvqgan.modeling import RvqganModel
from safetensors import safe_open

HOP = 32


def noise(*shape, seed=0):
    return 0.3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_frame_count():
    model = tiny_model()
    audio = noise(2, 1, 1000)  # not a hop multiple: padded to ceil(1000 / 32) = 32 frames
    with torch.no_grad():
        encoded = model.encode(audio)
        decoded = model.decode(audio_codes=encoded.audio_codes)
        output = model(audio)
    assert encoded.audio_codes.shape == (2, 4, 32) and encoded.audio_codes.dtype == torch.long
    assert encoded.quantized_representation.shape == (2, 64, 32)
    assert encoded.projected_latents.shape == (2, 4 * 4, 32)
    assert encoded.commitment_loss.dim() == 0 and encoded.commitment_loss > 0
    assert decoded.audio_values.shape == (2, 32 * HOP)
    assert output.audio_values.shape == (2, 1000)
    assert torch.allclose(output.audio_values, decoded.audio_values[..., :1000], atol=1e-6)
    expected_loss = 0.25 * encoded.commitment_loss + 1.0 * encoded.codebook_loss
    assert torch.allclose(output.loss, expected_loss) and torch.equal(encoded.loss, output.loss)


def test_return_dict_false_gives_the_same_tuple():
    model = tiny_model()
    audio = noise(1, 1, 320)
    with torch.no_grad():
        as_dict = model(audio)
        as_tuple = model(audio, return_dict=False)
        encoded_tuple = model.encode(audio, return_dict=False)
        (audio_values,) = model.decode(None, as_dict.audio_codes, False)
    fields = ("loss", "audio_values", "quantized_representation", "audio_codes", "projected_latents")
    assert len(as_tuple) == 5 and len(encoded_tuple) == 4
    for a, name in zip(as_tuple, fields):
        assert torch.equal(a, as_dict[name])
    assert torch.equal(encoded_tuple[2], as_dict.audio_codes)
    assert torch.allclose(audio_values[:, :320], as_dict.audio_values, atol=1e-6)


def test_decode_from_codes_equals_decode_from_quantized_representation():
    model = tiny_model()
    with torch.no_grad():
        encoded = model.encode(noise(2, 1, 640))
        from_codes = model.decode(audio_codes=encoded.audio_codes).audio_values
        from_latents = model.decode(quantized_representation=encoded.quantized_representation).audio_values
    assert torch.allclose(from_codes, from_latents, atol=1e-5)


def test_fewer_quantizers_are_a_prefix_of_all_quantizers():
    model = tiny_model()
    audio = noise(2, 1, 640)
    with torch.no_grad():
        full = model.encode(audio).audio_codes
        two = model.encode(audio, n_quantizers=2).audio_codes
    assert two.shape[1] == 2 and torch.equal(two, full[:, :2])


def test_n_quantizers_and_kbps_are_honoured_in_train_mode():
    model = tiny_model().train()
    config = model.config
    kbps = config.n_quantizers_to_kbps(3)
    for _ in range(5):  # dropout is random: it must never interfere
        assert model.encode(noise(4, 1, 320), n_quantizers=2).audio_codes.shape[1] == 2
        assert model.encode(noise(4, 1, 320), kbps=kbps).audio_codes.shape[1] == 3


def test_bandwidth_is_a_deprecated_name_of_kbps():
    model = tiny_model()
    kbps = model.config.n_quantizers_to_kbps(3)
    with torch.no_grad(), pytest.warns(FutureWarning, match="kbps"):
        old = model.encode(noise(1, 1, 320), bandwidth=kbps).audio_codes
    with torch.no_grad():
        assert torch.equal(old, model.encode(noise(1, 1, 320), kbps=kbps).audio_codes)


def test_quantizer_dropout_in_train_mode_only_for_the_first_items():
    torch.manual_seed(0)
    model = tiny_model(quantizer_dropout=0.5).train()
    audio = noise(1, 1, 320).repeat(8, 1, 1)  # 8 identical items
    kept_counts = set()
    for _ in range(20):
        quantized = model.encode(audio).quantized_representation
        # the last 4 items always keep all codebooks: identical to one another
        assert torch.allclose(quantized[4:], quantized[4:5].expand(4, -1, -1))
        kept_counts |= {int(not torch.allclose(quantized[i], quantized[4])) for i in range(4)}
    assert kept_counts == {0, 1}  # some dropped items lost codebooks, some (randint = N) did not


def test_all_codebooks_without_dropout_in_eval_mode():
    model = tiny_model(quantizer_dropout=1.0).eval()
    audio = noise(1, 1, 320).repeat(4, 1, 1)
    with torch.no_grad():
        quantized = model.encode(audio).quantized_representation
    assert torch.allclose(quantized, quantized[:1].expand(4, -1, -1))


def test_gradients_reach_encoder_and_codebooks():
    model = tiny_model().train()
    output = model(noise(2, 1, 320), n_quantizers=4)
    ((output.audio_values - noise(2, 1, 320, seed=1)).abs().mean() + output.loss).backward()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0  # straight-through estimator
    assert model.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0  # codebook loss


def test_weight_norm_keeps_outputs_and_checkpoints_hold_plain_weights(tmp_path):
    model = tiny_model()
    audio = noise(1, 1, 640)
    with torch.no_grad():
        before = model(audio).audio_values
        model.apply_weight_norm()
        assert any("parametrizations.weight.original0" in k for k in model.state_dict())
        during = model(audio).audio_values
        model.remove_weight_norm()
    assert torch.allclose(before, during, atol=1e-5)
    assert not any("parametrizations" in k for k in model.state_dict())
    model.save_pretrained(tmp_path / "folded")
    model.apply_weight_norm()
    model.save_pretrained(tmp_path / "during_training")  # still plain weights on disk
    for directory in ("folded", "during_training"):
        keys = safe_open(tmp_path / directory / "model.safetensors", "pt").keys()
        assert "decoder.conv1.weight" in keys and not any("parametrizations" in k for k in keys)
        with torch.no_grad():
            loaded = RvqganModel.from_pretrained(tmp_path / directory).eval()
            assert torch.allclose(loaded(audio).audio_values, before, atol=1e-5)


@pytest.mark.parametrize("ratios", [[2, 5], [3, 5, 2]])
def test_odd_strides_return_exactly_the_input_length(ratios):
    model = tiny_model(downsampling_ratios=ratios)
    hop = model.config.hop_length
    with torch.no_grad():
        for length in (hop * 7, hop * 7 - 3):
            assert model(noise(1, 1, length)).audio_values.shape[-1] == length
            frames = model.encode(noise(1, 1, length)).audio_codes.shape[-1]
            assert (
                model.decode(audio_codes=model.encode(noise(1, 1, length)).audio_codes).audio_values.shape[-1]
                == frames * hop
            )


@pytest.mark.parametrize("ratios", [[2, 4, 4], [2, 5]])
def test_batched_equals_solo_with_padding_mask(ratios):
    model = tiny_model(downsampling_ratios=ratios)
    hop = model.config.hop_length
    extractor = RvqganFeatureExtractor(sampling_rate=16000, hop_length=hop)
    lengths = [hop * 3 + 5, hop * 20, hop * 11 - 1]
    clips = [noise(n, seed=i).numpy() for i, n in enumerate(lengths)]
    batch = extractor(clips, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        batched = model.encode(batch["input_values"], padding_mask=batch["padding_mask"])
        decoded = model.decode(audio_codes=batched.audio_codes, padding_mask=batch["padding_mask"]).audio_values
        for i, clip in enumerate(clips):
            solo_inputs = extractor(clip, sampling_rate=16000, return_tensors="pt")
            solo = model.encode(solo_inputs["input_values"], padding_mask=solo_inputs["padding_mask"])
            frames = solo.audio_codes.shape[-1]
            assert frames == -(-lengths[i] // hop)
            same = (batched.audio_codes[i, :, :frames] == solo.audio_codes[0]).float().mean()
            assert same >= 0.999
            solo_audio = model.decode(
                audio_codes=solo.audio_codes, padding_mask=solo_inputs["padding_mask"]
            ).audio_values
            assert (decoded[i, : lengths[i]] - solo_audio[0, : lengths[i]]).abs().max() <= 1e-4
            assert decoded[i, lengths[i] :].abs().sum() == 0
    # without the mask, the padded items would not match: the test can tell
    with torch.no_grad():
        unmasked = model.encode(batch["input_values"]).audio_codes
        solo = model.encode(extractor(clips[0], sampling_rate=16000, return_tensors="pt")["input_values"]).audio_codes
    assert not torch.equal(unmasked[0, :, : solo.shape[-1]], solo[0])


def test_batched_equals_solo_on_the_full_44khz_model(full_model):
    extractor = RvqganFeatureExtractor()
    clips = [noise(n, seed=i).numpy() for i, n in enumerate([3000, 9000])]
    batch = extractor(clips, sampling_rate=44100, return_tensors="pt")
    with torch.no_grad():
        batched = full_model.encode(**batch).audio_codes
        solo = full_model.encode(**extractor(clips[0], sampling_rate=44100, return_tensors="pt")).audio_codes
    assert (batched[0, :, : solo.shape[-1]] == solo[0]).float().mean() >= 0.999


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.encode(torch.zeros(1, 320)), "batch, 1, samples"),
        (lambda m: m.encode(torch.zeros(1, 2, 320)), "batch, 1, samples"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), n_quantizers=5), r"\[1, 4\]"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), n_quantizers=0), r"\[1, 4\]"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), n_quantizers=2.0), "must be an integer"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), kbps="6"), "must be a number"),
        (lambda m: m(torch.zeros(1, 1, 320), bandwidth="6"), "must be a number"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), kbps=100.0), "out of range"),
        (lambda m: m.encode(torch.zeros(1, 1, 320), n_quantizers=1, kbps=1.0), "not both"),
        (lambda m: m.decode(), "audio_codes"),
        (lambda m: m.decode(audio_codes=torch.full((1, 2, 3), 64)), r"\[0, 64\)"),
        (lambda m: m.decode(audio_codes=torch.zeros(1, 5, 3, dtype=torch.long)), "1 to 4 codebooks"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model())
