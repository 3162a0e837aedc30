import json
import logging

import numpy as np
import pytest
import torch
from rvqgan.feature_extraction import RvqganFeatureExtractor

SR = 44100


def sine(freq, n, sr, amp=0.5, window=False):
    x = amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    return (x * np.hanning(n) if window else x).astype(np.float32)


@pytest.fixture
def fe():
    return RvqganFeatureExtractor()


def test_defaults(fe):
    assert (fe.feature_size, fe.sampling_rate, fe.padding_value, fe.hop_length) == (1, 44100, 0.0, 512)
    assert fe.model_input_names == ["input_values", "padding_mask"]


def test_padding_to_hop_multiple_and_batch_max(fe):
    a, b = sine(440, 1000, SR), sine(440, 3000, SR)
    out = fe([a, b], sampling_rate=SR)
    assert set(out.keys()) == {"input_values", "padding_mask"}
    assert out["input_values"].shape == (2, 1, 3072)
    assert out["input_values"].dtype == np.float32
    assert out["padding_mask"].shape == (2, 3072)
    assert out["padding_mask"].dtype == np.int64
    assert out["padding_mask"].sum(-1).tolist() == [1000, 3000]
    # the mask is a prefix of ones; values are the input then zeros
    assert out["padding_mask"][0, :1000].all() and not out["padding_mask"][0, 1000:].any()
    np.testing.assert_array_equal(out["input_values"][0, 0, :1000], a)
    np.testing.assert_array_equal(out["input_values"][1, 0, :3000], b)
    assert not out["input_values"][0, 0, 1000:].any() and not out["input_values"][1, 0, 3000:].any()


def test_exact_hop_multiple_is_not_padded_further(fe):
    out = fe(sine(440, 1024, SR), sampling_rate=SR)
    assert out["input_values"].shape == (1, 1, 1024)
    assert out["padding_mask"].sum() == 1024


def test_custom_hop_and_padding_value():
    fe = RvqganFeatureExtractor(sampling_rate=24000, hop_length=320, padding_value=-1.0)
    out = fe(np.ones(700, dtype=np.float32), sampling_rate=24000)
    assert out["input_values"].shape == (1, 1, 960)
    np.testing.assert_array_equal(out["input_values"][0, 0, 700:], -1.0)


def test_int16_and_float_give_same_values(fe):
    pcm = (np.random.default_rng(0).uniform(-1, 1, 2000) * 32767).astype(np.int16)
    from_int = fe(pcm, sampling_rate=SR)["input_values"]
    from_float = fe(pcm.astype(np.float64) / 32768, sampling_rate=SR)["input_values"]
    np.testing.assert_array_equal(from_int, from_float)
    assert from_int.dtype == np.float32


@pytest.mark.parametrize(
    "pcm, expected",
    [
        (np.array([-32768, 0, 16384], dtype=np.int16), [-1.0, 0.0, 0.5]),
        (np.array([-(2**31), 0, 2**30], dtype=np.int32), [-1.0, 0.0, 0.5]),
        (np.array([0, 128, 192], dtype=np.uint8), [-1.0, 0.0, 0.5]),
        (np.array([-128, 0, 64], dtype=np.int8), [-1.0, 0.0, 0.5]),
    ],
)
def test_integer_pcm_scaling(fe, pcm, expected):
    out = fe(pcm, sampling_rate=SR)["input_values"][0, 0, :3]
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_resampling_48k_length_and_frequency(fe):
    n = 4800  # 0.1 s at 48 kHz -> 4410 samples at 44.1 kHz (10 Hz FFT bins)
    out = fe(sine(1000, n, 48000), sampling_rate=48000)
    real = int(out["padding_mask"].sum())
    assert real == round(n * 44100 / 48000) == 4410
    assert out["input_values"].shape[-1] == 4608
    x = out["input_values"][0, 0, :real]
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * SR / real
    assert abs(peak_hz - 1000) < 1e-6
    assert np.sqrt(np.mean(x[200:-200] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-2)


@pytest.mark.parametrize("n", [1000, 1001, 3333])
def test_resampled_length_rounds(fe, n):
    out = fe(sine(440, n, 16000), sampling_rate=16000)
    assert int(out["padding_mask"].sum()) == round(n * 44100 / 16000)


def test_downmix_vs_separate(fe):
    left, right = np.full(600, 0.5, np.float32), np.full(600, -0.1, np.float32)
    stereo = np.stack([left, right])
    down = fe(stereo, sampling_rate=SR)
    assert down["input_values"].shape == (1, 1, 1024)
    assert "n_channels" not in down
    np.testing.assert_allclose(down["input_values"][0, 0, :600], 0.2, atol=1e-7)

    sep = fe(stereo, sampling_rate=SR, channels="separate")
    assert sep["input_values"].shape == (2, 1, 1024)
    assert sep["n_channels"].tolist() == [2]
    np.testing.assert_array_equal(sep["input_values"][0, 0, :600], left)
    np.testing.assert_array_equal(sep["input_values"][1, 0, :600], right)


def test_separate_mixed_batch_keeps_item_order(fe):
    stereo, mono = np.ones((2, 100), np.float32), np.full(700, 0.25, np.float32)
    out = fe([mono, stereo, mono[:50]], sampling_rate=SR, channels="separate")
    assert out["n_channels"].tolist() == [1, 2, 1]
    assert out["padding_mask"].sum(-1).tolist() == [700, 100, 100, 50]
    assert out["input_values"][:, 0, 0].tolist() == [0.25, 1.0, 1.0, 0.25]


def test_post_process_round_trip_with_resampling(fe):
    stereo = np.stack([sine(440, 5000, 48000, window=True), sine(660, 5000, 48000, 0.3, window=True)])
    mono = sine(1000, 3000, 48000, 0.4, window=True)
    out = fe([stereo, mono], sampling_rate=48000, channels="separate")
    restored = fe.post_process(out["input_values"], out["padding_mask"], out["n_channels"], sampling_rate=48000)
    assert [r.shape for r in restored] == [(2, 5000), (1, 3000)]
    assert all(r.dtype == np.float32 for r in restored)
    np.testing.assert_allclose(restored[0], stereo, atol=1e-4)
    np.testing.assert_allclose(restored[1][0], mono, atol=1e-4)


def test_post_process_mono_without_n_channels_at_model_rate(fe):
    a, b = sine(440, 1000, SR), sine(880, 2000, SR)
    out = fe([a, b], sampling_rate=SR)
    audio = out["input_values"] + 0.0
    audio[..., 2000:] = 7.0  # garbage in the padding must be trimmed away
    restored = fe.post_process(audio[:, 0, :], out["padding_mask"])  # (B, T) is accepted too
    assert [r.shape for r in restored] == [(1000,), (2000,)]
    np.testing.assert_array_equal(restored[0], a)
    np.testing.assert_array_equal(restored[1], b)


def test_post_process_rejects_inconsistent_n_channels(fe):
    out = fe([np.ones(10, np.float32)], sampling_rate=SR, channels="separate")
    with pytest.raises(ValueError, match="does not add up"):
        fe.post_process(out["input_values"], out["padding_mask"], n_channels=[2])


def test_return_tensors_pt_and_torch_input(fe):
    stereo = torch.tensor(np.stack([sine(440, 800, SR), sine(220, 800, SR)]))
    out = fe([stereo, torch.ones(300)], sampling_rate=SR, channels="separate", return_tensors="pt")
    assert isinstance(out["input_values"], torch.Tensor) and out["input_values"].dtype == torch.float32
    assert out["input_values"].shape == (3, 1, 1024)
    assert isinstance(out["padding_mask"], torch.Tensor) and out["padding_mask"].dtype == torch.int64
    assert out["padding_mask"].sum(-1).tolist() == [800, 800, 300]
    assert out["n_channels"].dtype == torch.int64 and out["n_channels"].tolist() == [2, 1]
    restored = fe.post_process(out["input_values"], out["padding_mask"], out["n_channels"])
    assert [r.shape for r in restored] == [(2, 800), (1, 300)]
    np.testing.assert_array_equal(restored[0], stereo.numpy())


def test_save_and_load_round_trip(tmp_path):
    fe = RvqganFeatureExtractor(sampling_rate=24000, hop_length=320)
    fe.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert (saved["hop_length"], saved["sampling_rate"]) == (320, 24000)
    loaded = RvqganFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.hop_length, loaded.sampling_rate, loaded.feature_size) == (320, 24000, 1)
    assert loaded(np.ones(700, np.float32), sampling_rate=24000)["input_values"].shape == (1, 1, 960)


def test_missing_sampling_rate_warns_once_and_assumes_model_rate(caplog):
    fe = RvqganFeatureExtractor(sampling_rate=22050)  # unique rate -> unique (uncached) warning message
    x = sine(440, 500, 22050)
    with caplog.at_level(logging.WARNING):
        first = fe(x)
        fe(x)
    assert len([r for r in caplog.records if "sampling_rate" in r.message]) == 1
    np.testing.assert_array_equal(first["input_values"], fe(x, sampling_rate=22050)["input_values"])


@pytest.mark.parametrize(
    "raw_audio, kwargs, match",
    [
        (np.zeros(0, np.float32), {}, "Empty audio"),
        (np.zeros((2, 0), np.float32), {}, "Empty audio"),
        ([], {}, "Empty audio"),
        (np.array([0.1, np.nan, 0.2], np.float32), {}, "contains NaN or inf"),
        ([np.ones(10), np.array([np.inf, 0.0])], {}, "contains NaN or inf"),
        (np.float32(0.5), {}, r"got shape \(\)"),
        (np.zeros((1, 2, 100), np.float32), {}, r"got shape \(1, 2, 100\)"),
        (
            np.zeros((1000, 2), np.float32),
            {},
            r"(?i)expected \(channels, samples\), got shape \(1000, 2\); transpose it",
        ),
        (np.zeros(100, np.float32), {"channels": "stereo"}, "`channels` must be one of"),
        (np.zeros(100, np.float32), {"sampling_rate": 0}, "must be positive"),
        (np.zeros(100, np.float32), {"sampling_rate": -16000}, "must be positive"),
    ],
)
def test_bad_input_raises(fe, raw_audio, kwargs, match):
    kwargs = {"sampling_rate": SR, **kwargs}
    with pytest.raises(ValueError, match=match):
        fe(raw_audio, **kwargs)
