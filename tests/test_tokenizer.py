"""AudioTokenizer (datasets.map callable) and the token layouts, on real clips at 44.1 and 48 kHz, mono and stereo."""

import math

import datasets
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import ALSA_SPEECH, EXAMPLES, real_audio, tiny_model
from rvqgan.feature_extraction import RvqganFeatureExtractor
from rvqgan.feature_extraction.layouts import LAYOUTS, default_pad_id, from_layout, layout_frames, to_layout, vocab_size
from rvqgan.feature_extraction.tokenizer import AudioTokenizer, load_audio

ALSA = ALSA_SPEECH.parent


@pytest.fixture(scope="module")
def model():
    return tiny_model(sampling_rate=44100)  # hop 32, 4 codebooks of 64


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Real clips of mixed rates, channel counts and lengths (not multiples of the hop), written as wav/flac files.
    Returns a list of (path, (C, T) float32 array as written, sampling rate)."""
    folder = tmp_path_factory.mktemp("clips")
    choir, rate_choir = sf.read(EXAMPLES / "ambi_choir.flac", dtype="float32", always_2d=True)
    amen, rate_amen = sf.read(EXAMPLES / "loop_amen.flac", dtype="float32", always_2d=True)
    guitar, rate_guitar = sf.read(EXAMPLES / "guit_harmonics.flac", dtype="float32", always_2d=True)
    center, rate_center = real_audio(ALSA_SPEECH)
    left, _ = real_audio(ALSA / "Front_Left.wav")
    right, _ = real_audio(ALSA / "Front_Right.wav")
    items = [
        ("choir_stereo.flac", choir.T[:, 5000:13001], rate_choir),  # 44.1 kHz stereo
        ("speech_mono.wav", center[None, 8000:14000], rate_center),  # 48 kHz mono
        ("amen_stereo.wav", amen.T[:, :4444], rate_amen),  # 44.1 kHz stereo
        ("speech_stereo.flac", np.stack([left[6000:11003], right[6000:11003]]), rate_center),  # 48 kHz stereo
        ("guitar_mono.flac", guitar.T[:, :10000], rate_guitar),  # 44.1 kHz mono, the longest
        ("short_mono.wav", center[None, 12000:13001], rate_center),  # 48 kHz, 1001 samples
    ]
    out = []
    for name, audio, rate in items:
        path = folder / name
        sf.write(path, audio.T, rate, subtype="FLOAT" if name.endswith(".wav") else "PCM_24")
        written, _ = sf.read(path, dtype="float32", always_2d=True)
        out.append((str(path), np.ascontiguousarray(written.T), rate))
    assert {rate for _, _, rate in out} == {44100, 48000} and {a.shape[0] for _, a, _ in out} == {1, 2}
    return out


def path_dataset(clips):
    ds = datasets.Dataset.from_dict({"audio": [p for p, _, _ in clips], "idx": list(range(len(clips)))})
    return ds.cast_column("audio", datasets.Audio(decode=False))  # {"path", "bytes"}: no torchcodec needed


def encode_alone(model, audio, rate):
    """Reference: downmix, resample with soxr, encode this item alone without a padding mask."""
    mono = audio.mean(axis=0)
    at_model_rate = soxr.resample(mono, rate, 44100, quality="HQ").astype(np.float32)
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(at_model_rate)[None, None]).audio_codes[0].numpy()
    return codes, len(at_model_rate)


def test_map_on_dataset_and_streaming_give_identical_codes(model, clips):
    ds = path_dataset(clips)
    tokenizer = AudioTokenizer(model, max_batch_seconds=0.3)  # forces several buckets within a batch
    mapped = ds.map(tokenizer, batched=True, batch_size=4, remove_columns=["audio"])
    assert mapped.column_names == ["idx", "audio_codes", "n_frames"]
    assert str(mapped.features["audio_codes"].feature.feature.dtype) == "int16"
    streamed = list(
        ds.to_iterable_dataset(num_shards=2).map(tokenizer, batched=True, batch_size=3, remove_columns=["audio"])
    )
    assert [row["idx"] for row in streamed] == mapped["idx"] == list(range(len(clips)))
    for row, codes, frames in zip(streamed, mapped["audio_codes"], mapped["n_frames"]):
        np.testing.assert_array_equal(np.asarray(row["audio_codes"]), np.asarray(codes))
        assert row["n_frames"] == frames == np.asarray(codes).shape[1]


def test_each_example_codes_equal_encoding_it_alone(model, clips):
    ds = path_dataset(clips)
    mapped = ds.map(AudioTokenizer(model, max_batch_seconds=0.5), batched=True, batch_size=16, remove_columns=["audio"])
    assert str(mapped.features["audio_codes"].feature.feature.dtype) == "int16"
    for (path, audio, rate), codes, frames in zip(clips, mapped["audio_codes"], mapped["n_frames"]):
        codes = np.asarray(codes)
        reference, length = encode_alone(model, audio, rate)
        assert frames == math.ceil(length / 32) == codes.shape[1], path
        assert codes.shape == (4, frames)
        assert (codes == reference).mean() >= 0.999, path


def test_decoded_dicts_and_single_examples_match_undecoded_files(model, clips):
    tokenizer = AudioTokenizer(model)
    undecoded = tokenizer({"audio": [{"path": p, "bytes": None} for p, _, _ in clips]})
    with open(clips[0][0], "rb") as f:
        as_bytes = tokenizer({"audio": [{"path": None, "bytes": f.read()}]})
    decoded = tokenizer({"audio": [{"array": a if a.shape[0] > 1 else a[0], "sampling_rate": r} for _, a, r in clips]})
    torch_arrays = tokenizer({"audio": [{"array": torch.from_numpy(a), "sampling_rate": r} for _, a, r in clips]})
    np.testing.assert_array_equal(as_bytes["audio_codes"][0], undecoded["audio_codes"][0])
    for i, (_, audio, rate) in enumerate(clips):
        single = tokenizer({"audio": {"array": audio, "sampling_rate": rate}})  # a non-batched map call
        for other in (decoded["audio_codes"][i], torch_arrays["audio_codes"][i], single["audio_codes"]):
            np.testing.assert_array_equal(other, undecoded["audio_codes"][i])
        assert single["n_frames"] == undecoded["n_frames"][i]


def test_buckets_are_length_sorted_within_budget_and_order_is_restored(model, clips):
    tokenizer = AudioTokenizer(model, max_batch_seconds=0.4)
    items = [tokenizer.to_model_rate(*load_audio(p)) for p, _, _ in clips]
    calls = []
    encode = model.encode

    def recording(input_values, padding_mask=None, **kwargs):
        calls.append(padding_mask.sum(-1).tolist())
        return encode(input_values, padding_mask=padding_mask, **kwargs)

    model.encode = recording
    try:
        bucketed = tokenizer.encode_items(items)
    finally:
        del model.encode
    budget = 0.4 * 44100
    lengths = [length for call in calls for length in call]
    assert len(calls) > 1 and lengths == sorted((len(x) for x in items), reverse=True)
    for call in calls:
        assert len(call) == 1 or len(call) * math.ceil(max(call) / 32) * 32 <= budget
    one_batch = AudioTokenizer(model, max_batch_seconds=1000).encode_items(items)
    alone = [AudioTokenizer(model).encode_items([x])[0] for x in items]
    for a, b, c in zip(bucketed, one_batch, alone):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_detokenize_equals_the_model_round_trip(model, clips):
    extractor = RvqganFeatureExtractor(sampling_rate=44100, hop_length=32)
    tokenizer = AudioTokenizer(model, n_quantizers=3)
    _, audio, rate = clips[3]
    tokens = tokenizer.tokenize(audio, rate)
    decoded = tokenizer.detokenize(tokens)
    inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        reference = model.decode(
            audio_codes=model.encode(inputs["input_values"], n_quantizers=3).audio_codes
        ).audio_values[0]
    assert decoded.dtype == np.float32 and decoded.shape == (tokens.shape[1] * 32,)
    np.testing.assert_allclose(decoded, reference.numpy(), atol=1e-5)
    # a batch of different lengths decodes each item as if alone; n_samples trims
    short = tokenizer.tokenize(*clips[5][1:])
    batch = tokenizer.detokenize([short, tokens], n_samples=[100, None])
    np.testing.assert_allclose(batch[1], decoded, atol=1e-5)
    np.testing.assert_allclose(batch[0], tokenizer.detokenize(short)[:100], atol=1e-5)
    # other layouts decode to the same audio
    for layout in ("flat", "delay"):
        other = AudioTokenizer(model, n_quantizers=3, layout=layout)
        ids = other.tokenize(audio, rate)
        np.testing.assert_array_equal(ids, to_layout(tokens.astype(np.int64), layout, 64))
        np.testing.assert_allclose(other.detokenize(ids), decoded, atol=1e-5)


def test_n_quantizers_kbps_and_dtype(model, clips):
    path = clips[1][0]
    full = AudioTokenizer(model).tokenize(path)
    two = AudioTokenizer(model, n_quantizers=2).tokenize(path)
    by_rate = AudioTokenizer(model, kbps=model.config.n_quantizers_to_kbps(2)).tokenize(path)
    assert full.shape[0] == 4 and two.shape[0] == 2 and full.dtype == two.dtype == np.int16
    np.testing.assert_array_equal(two, full[:2])  # residual quantization: a prefix of the codebooks
    np.testing.assert_array_equal(by_rate, two)
    with pytest.raises(ValueError):
        AudioTokenizer(model, n_quantizers=2, kbps=1.0)
    with pytest.raises(ValueError):
        AudioTokenizer(model, n_quantizers=5)
    big = tiny_model(sampling_rate=44100, n_codebooks=9, codebook_size=4096)
    assert AudioTokenizer(big, layout="flat").dtype == np.int32  # 9 * 4096 ids do not fit in int16


def test_with_rank_uses_cuda_rank_only_when_available(model, clips, monkeypatch):
    tokenizer = AudioTokenizer(model)
    ds = path_dataset(clips[:2])
    mapped = ds.map(tokenizer, batched=True, with_rank=True, remove_columns=["audio"])
    np.testing.assert_array_equal(np.asarray(mapped["audio_codes"][1]), tokenizer.tokenize(clips[1][0]))
    assert tokenizer._device_for(1) == torch.device("cpu") or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert tokenizer._device_for(3) == torch.device("cuda:1") and tokenizer._device_for(None) == tokenizer.device
    # default bucket budget: small on CPU (big batches are slower there), large on CUDA; an explicit one wins
    assert tokenizer.batch_seconds("cpu") == 2.0 and tokenizer.batch_seconds(torch.device("cuda:1")) == 120.0
    assert AudioTokenizer(model, max_batch_seconds=7).batch_seconds("cuda") == 7.0


def test_runs_under_inference_mode(model, clips):
    seen = []
    encode = model.encode
    model.encode = lambda *a, **k: seen.append(torch.is_inference_mode_enabled()) or encode(*a, **k)
    try:
        AudioTokenizer(model).tokenize(clips[0][0])
    finally:
        del model.encode
    assert seen == [True]


# ---- layouts -----------------------------------------------------------------------------------------------------


def test_flat_and_delay_layouts_on_a_small_example():
    codes = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(to_layout(codes, "flat", 8), [1, 12, 2, 13, 3, 14])
    np.testing.assert_array_equal(to_layout(codes, "delay", 8), [[1, 2, 3, 8], [8, 4, 5, 6]])
    np.testing.assert_array_equal(to_layout(codes, "delay", 8, pad_id=99), [[1, 2, 3, 99], [99, 4, 5, 6]])
    assert default_pad_id(8) == 8 and vocab_size("flat", 2, 8) == 16 and vocab_size("delay", 2, 8) == 9
    assert layout_frames(to_layout(codes, "delay", 8), "delay", 2) == 3
    assert layout_frames(to_layout(codes, "flat", 8), "flat", 2) == 3


@pytest.mark.parametrize("seed", range(20))
def test_layouts_invert_exactly_on_random_codes(seed):
    rng = np.random.default_rng(seed)
    n_q, frames, size = int(rng.integers(1, 10)), int(rng.integers(0, 50)), int(rng.integers(2, 2000))
    shape = (n_q, frames) if seed % 2 else (int(rng.integers(1, 4)), n_q, frames)
    codes = rng.integers(0, size, shape)
    for layout in LAYOUTS:
        tokens = to_layout(codes, layout, size)
        assert tokens.shape[-1] == {"codes": frames, "flat": n_q * frames, "delay": frames + n_q - 1}[layout]
        np.testing.assert_array_equal(from_layout(tokens, layout, n_q, size), codes)
        as_torch = to_layout(torch.from_numpy(codes), layout, size)
        assert isinstance(as_torch, torch.Tensor)
        assert torch.equal(from_layout(as_torch, layout, n_q, size), torch.from_numpy(codes))
    flat = to_layout(codes, "flat", size)
    if frames:  # frame-major: the first n_q ids are frame 0's codebooks 0..n_q-1, offset by k * size
        np.testing.assert_array_equal(flat[..., :n_q], codes[..., :, 0] + np.arange(n_q) * size)
    assert flat.size == 0 or flat.max() < n_q * size


def test_from_layout_rejects_malformed_tokens():
    codes = np.array([[1, 2, 3], [4, 5, 6]])
    delayed = to_layout(codes, "delay", 8)
    bad_pad = delayed.copy()
    bad_pad[1, 0] = 0
    with pytest.raises(ValueError):
        from_layout(bad_pad, "delay", 2, 8)
    with pytest.raises(ValueError):
        from_layout(np.array([1, 2, 12]), "flat", 2, 8)  # length not a multiple of n_q
    with pytest.raises(ValueError):
        from_layout(np.array([12, 1]), "flat", 2, 8)  # codebook 1's id where codebook 0's belongs
    with pytest.raises(ValueError):
        to_layout(np.array([[8]]), "flat", 8)
    with pytest.raises(ValueError):
        to_layout(codes, "interleaved", 8)
