"""The audio module: streamed resampling equals one-shot resampling, loudness equals pyloudnorm's, excerpts are the
file's samples, and a file's bytes read as its path does."""

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from conftest import EXAMPLES
from rvqgan.feature_extraction.audio import (
    apply_gain,
    integrated_loudness,
    normalization_gain_db,
    resample,
    resample_stream,
)
from rvqgan.feature_extraction.audio_io import AudioFileError, excerpt, read_audio, read_excerpt


def noise(channels: int, samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, samples))).astype(np.float32)


@pytest.mark.parametrize("in_rate, out_rate, channels", [(48000, 44100, 2), (16000, 44100, 1), (44100, 22050, 3)])
def test_resample_stream_equals_resampling_the_whole(in_rate, out_rate, channels):
    audio = noise(channels, 3 * in_rate + 17)
    expected = resample(audio, in_rate, out_rate)
    for sizes in ([audio.shape[-1]], [997] * (audio.shape[-1] // 997 + 1), [1, 5, in_rate, 3, 2 * in_rate]):
        bounds = list(np.minimum(np.cumsum([0] + sizes), audio.shape[-1])) + [audio.shape[-1]]  # the last: the rest
        blocks = [audio[:, a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
        got = np.concatenate(list(resample_stream(blocks, in_rate, out_rate, channels)), axis=1)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rate, shape", [(16000, (16000,)), (44100, (2, 50000)), (48000, (5, 100000))])
def test_integrated_loudness_equals_pyloudnorm(rate, shape):
    audio = noise(1, int(np.prod(shape))).reshape(shape)
    audio[..., : shape[-1] // 3] *= 0.01  # a quiet stretch that the gates drop
    expected = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    assert integrated_loudness(audio, rate) == pytest.approx(expected, abs=1e-5)
    assert integrated_loudness(np.zeros(rate), rate) == float("-inf")


def test_normalization_reaches_the_target_unless_the_peak_would_pass_1():
    audio = noise(1, 16000)[0]
    quiet = apply_gain(audio, normalization_gain_db(integrated_loudness(audio, 16000), np.abs(audio).max(), -30.0))
    assert integrated_loudness(quiet, 16000) == pytest.approx(-30.0, abs=1e-4)
    loud = apply_gain(audio, normalization_gain_db(integrated_loudness(audio, 16000), np.abs(audio).max(), 0.0))
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-6) and integrated_loudness(loud, 16000) < 0.0


def test_excerpts_are_the_files_samples_and_bytes_read_as_the_path(tmp_path):
    audio, rate = read_audio(EXAMPLES / "loop_amen.flac")
    data = (EXAMPLES / "loop_amen.flac").read_bytes()
    whole, bytes_rate = read_audio(data)
    np.testing.assert_array_equal(whole, audio)
    assert bytes_rate == rate
    for source in (EXAMPLES / "loop_amen.flac", data):
        got, got_rate = read_excerpt(source, 0.25, np.random.default_rng(0))
        start = int(np.random.default_rng(0).integers(0, audio.shape[-1] - got.shape[-1] + 1))
        assert got_rate == rate and got.shape == (audio.shape[0], int(np.ceil(0.25 * rate)))
        np.testing.assert_array_equal(got, audio[:, start : start + got.shape[-1]])
        np.testing.assert_array_equal(got, excerpt(audio, rate, 0.25, np.random.default_rng(0)))
    sf.write(tmp_path / "short.wav", audio[:, :100].T, rate, subtype="FLOAT")
    short, _ = read_excerpt(tmp_path / "short.wav", 0.25, np.random.default_rng(0))
    np.testing.assert_array_equal(short[:, :100], audio[:, :100])
    assert not short[:, 100:].any()


def test_unreadable_bytes_are_named():
    with pytest.raises(AudioFileError, match=r"^12 bytes of audio: unreadable or corrupt audio"):
        read_audio(b"not an audio")
    with pytest.raises(AudioFileError, match=r"^clip\.wav: unreadable or corrupt audio"):
        read_audio(b"not an audio", name="clip.wav")
