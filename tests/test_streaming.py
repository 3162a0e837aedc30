"""Files coded block by block: loudness, windows and the `rvqgan` command give what whole arrays give, in memory
that does not grow with the file."""

import os
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
from conftest import tiny_model
from rvqgan.feature_extraction import audio_io
from rvqgan.feature_extraction.audio import LoudnessMeter
from rvqgan.feature_extraction.audio_io import read_audio

from rvqgan import chunking, compress, decompress
from rvqgan.chunking import encode_chunked, encode_stream
from rvqgan.cli import main
from rvqgan.container import read

pytestmark = pytest.mark.usefixtures("one_thread")


def music_like(channels: int, samples: int, rate: int, seed: int = 0) -> np.ndarray:
    """Tones under a swelling envelope with noise, and a silent stretch: (channels, samples) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    audio = 0.3 * np.sin(2 * np.pi * 220 * (1 + np.arange(channels))[:, None] * t) * np.sin(np.pi * t / t[-1])
    audio = audio + 0.05 * rng.standard_normal((channels, samples))
    audio[:, samples // 3 : samples // 2] = 0
    return audio.astype(np.float32)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (48000, 5), (22050, 3)])
@pytest.mark.parametrize("seconds", [0.45, 1.06, 3.3])
def test_loudness_meter_equals_pyloudnorm(rate, channels, seconds):
    audio = music_like(channels, int(seconds * rate), rate)
    expected = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    for block in (audio.shape[-1], 4410, 997):
        meter = LoudnessMeter(rate, channels)
        for start in range(0, audio.shape[-1], block):
            meter.add(audio[:, start : start + block])
        assert meter.loudness() == pytest.approx(expected, abs=1e-5)
        assert meter.peak == np.abs(audio).max()


def test_silence_and_short_audio_get_no_gain():
    for audio in (np.zeros((2, 48000), np.float32), music_like(1, 6000, 16000)):
        meter = LoudnessMeter(16000, audio.shape[0])
        meter.add(audio)
        assert meter.gain_db() == 0.0


def test_encode_stream_equals_encode_chunked_for_any_blocks():
    model = tiny_model()
    x = torch.from_numpy(music_like(2, 7001, 16000))[:, None]
    expected = encode_chunked(model, x, window_frames=20)
    rng = np.random.default_rng(0)
    for sizes in ([1] * 40, [640, 640, 32, 1, 5000], list(rng.integers(1, 900, 30))):
        bounds = list(np.minimum(np.cumsum([0] + sizes), 7001)) + [7001]  # the last block: the rest
        blocks = [x[..., a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
        got = torch.cat(list(encode_stream(model, blocks, window_frames=20)), -1)
        assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="empty"):
        list(encode_stream(model, [x[..., :0]]))


def test_command_reads_and_writes_files_in_blocks_as_whole_arrays_are_coded(monkeypatch, tmp_path):
    """Small blocks and windows: the `.rvq` bytes and the decoded file equal `compress` / `decompress` of arrays."""
    monkeypatch.setattr(audio_io, "BLOCK_SECONDS", 0.7)
    monkeypatch.setattr(chunking, "DEFAULT_WINDOW_SECONDS", 1.0)
    model = tiny_model(sampling_rate=44100)
    model.save_pretrained(tmp_path / "model")
    sf.write(tmp_path / "in.wav", music_like(2, int(48000 * 6.3), 48000).T, 48000, subtype="FLOAT")
    assert (
        main(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path), "--model", str(tmp_path / "model"), "--quiet"])
        == 0
    )
    data = (tmp_path / "in.rvq").read_bytes()
    audio, rate = read_audio(tmp_path / "in.wav")
    assert data == compress(model, audio, rate, identity=read(data)[0].model_id)
    assert (
        main(
            [
                "decode",
                str(tmp_path / "in.rvq"),
                "-o",
                str(tmp_path / "out"),
                "--model",
                str(tmp_path / "model"),
                "--quiet",
            ]
        )
        == 0
    )
    decoded, decoded_rate = read_audio(tmp_path / "out" / "in.wav")
    expected, _ = decompress(model, data)
    assert decoded_rate == 48000 and np.array_equal(decoded, expected) and decoded.shape == audio.shape


# the process's own peak (VmHWM, kB): getrusage's ru_maxrss keeps the peak of the image it was forked from, here a
# pytest worker that may hold GBs
PEAK_RSS = """
import sys
from rvqgan.cli import main
assert main(sys.argv[1:]) == 0
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) // 1024)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_file(tmp_path):
    """Peak RSS of `rvqgan encode` / `decode` on 10 minutes of audio stays within a few MB of that on 1 minute
    (10 minutes of float32 samples alone are 37 MB). Hop 256, so that the codes, which do grow, are 1 % of that;
    the allocator's fragmentation adds 5-15 MB (with 2 threads, whatever the machine)."""
    tiny_model(encoder_hidden_size=4, decoder_hidden_size=16, downsampling_ratios=[4, 8, 8]).save_pretrained(
        tmp_path / "model"
    )
    peaks = {}
    for minutes in (1, 10):
        wav = tmp_path / f"{minutes}min.wav"
        sf.write(wav, np.tile(music_like(1, 16000 * 60, 16000), minutes).T, 16000, subtype="PCM_16")
        for command, source in (("encode", wav), ("decode", tmp_path / "rvq" / f"{minutes}min.rvq")):
            out = tmp_path / ("rvq" if command == "encode" else "decoded")
            result = subprocess.run(
                [sys.executable, "-c", PEAK_RSS, command, source, "-o", out, "--model", tmp_path / "model", "--quiet"],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OMP_NUM_THREADS": "2"},
            )
            peaks[command, minutes] = int(result.stdout.split()[-1])
    assert sf.info(tmp_path / "decoded" / "10min.wav").frames == 16000 * 600
    for command in ("encode", "decode"):
        assert peaks[command, 10] - peaks[command, 1] < 25, peaks  # whole arrays: +177 MB (encode), +113 MB (decode)
