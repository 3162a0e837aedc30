"""The evaluation metrics, the Opus / MP3 baselines and the quality report (benchmarks.quality)."""

import argparse
import csv
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ALSA_SPEECH, EXAMPLES, real_audio, tiny_model
from rvqgan.evaluation import baselines, metrics

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # librosa: empty mel filters at small windows
SR = 44100


def requires(*names):
    """Optional evaluation dependencies (modules, or `ffmpeg`): a failure in CI, a skip elsewhere."""
    missing = [n for n in names if (shutil.which(n) is None if n == "ffmpeg" else importlib.util.find_spec(n) is None)]
    if missing:
        message = f"needs {', '.join(missing)} (pip install '.[eval]'; apt-get install ffmpeg)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)


def noise(seconds=1.0, rate=SR, seed=0, level=0.1):
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float64)


def test_identical_signals_have_zero_distance_and_huge_si_sdr():
    requires("librosa")
    x = noise()
    assert metrics.mel_distance(x, x, SR) == 0.0
    assert metrics.stft_distance(x, x, SR) == 0.0
    assert metrics.waveform_l1(x, x, SR) == 0.0
    assert metrics.si_sdr(x, x, SR) > 90
    assert metrics.mel_distance(x, x + noise(seed=1, level=0.01), SR) > 0.05


@pytest.mark.parametrize("gain", [0.5, 3.0])
def test_a_gain_leaves_si_sdr_and_shifts_the_log_spectra_by_log10_gain(gain):
    requires("librosa")
    x = noise(seconds=0.5, level=1.0)
    y = gain * x
    assert metrics.si_sdr(x, y, SR) > 90
    # every mel bin moves by |log10 g|, so each scale's L1 mean is |log10 g| where no bin is clamped (windows of 128
    # and up for this noise); at 32 / 64 the weakest bins (DC-heavy lowest filters) hit the 1e-5 clamp and add less
    exact = metrics.mel_distance(x, y, SR, n_mels=metrics.MEL_N_MELS[2:], window_lengths=metrics.MEL_WINDOWS[2:])
    assert exact == pytest.approx(5 * abs(np.log10(gain)), rel=1e-9)
    full = metrics.mel_distance(x, y, SR)
    assert 6 * abs(np.log10(gain)) < full <= 7 * abs(np.log10(gain)) + 1e-9
    # STFT: log10(|X|^2) moves by 2|log10 g| and the magnitude L1 is |1 - g| mean|X|
    expected = sum(
        2 * abs(np.log10(gain)) + abs(1 - gain) * metrics.stft_magnitude(torch.from_numpy(x), w).mean().item()
        for w in metrics.STFT_WINDOWS
    )
    assert metrics.stft_distance(x, y, SR) == pytest.approx(expected, rel=1e-6)


def test_mel_and_stft_distances_match_an_independent_librosa_computation():
    requires("librosa")
    import librosa

    x = noise(seconds=0.3, level=0.3)
    y = x + noise(seconds=0.3, seed=5, level=0.05)

    def mel(a, w, m):
        return librosa.feature.melspectrogram(
            y=a,
            sr=SR,
            n_fft=w,
            hop_length=w // 4,
            window="hann",
            center=True,
            pad_mode="reflect",
            power=1.0,
            n_mels=m,
            fmin=0.0,
            fmax=None,
        )

    def stft(a, w):
        return np.abs(librosa.stft(a, n_fft=w, hop_length=w // 4, window="hann", center=True, pad_mode="reflect"))

    expected = sum(
        np.abs(np.log10(np.maximum(mel(y, w, m), 1e-5)) - np.log10(np.maximum(mel(x, w, m), 1e-5))).mean()
        for m, w in zip([5, 10, 20, 40, 80, 160, 320], [32, 64, 128, 256, 512, 1024, 2048])
    )
    assert metrics.mel_distance(x, y, SR) == pytest.approx(expected, rel=1e-6)
    expected = sum(
        np.abs(np.log10(np.maximum(stft(y, w), 1e-5) ** 2) - np.log10(np.maximum(stft(x, w), 1e-5) ** 2)).mean()
        + np.abs(stft(y, w) - stft(x, w)).mean()
        for w in (2048, 512)
    )
    assert metrics.stft_distance(x, y, SR) == pytest.approx(expected, rel=1e-6)


def test_a_delay_costs_si_sdr_and_grows_the_mel_distance():
    requires("librosa")
    x = noise(seconds=0.5)

    def delayed(d):
        return np.concatenate([np.zeros(d), x[:-d]])

    assert metrics.si_sdr(x, delayed(5), SR) < -10  # white noise decorrelates after one sample
    distances = [metrics.mel_distance(x, delayed(d), SR) for d in (1, 16, 512)]
    assert 0 < distances[0] < distances[1] < distances[2]
    assert metrics.waveform_l1(x, delayed(1), SR) > 0.05


def test_si_sdr_of_an_orthogonal_noise_is_its_snr():
    x = noise(seconds=0.5)
    x -= x.mean()
    n = noise(seconds=0.5, seed=3)
    n -= n.mean()
    n -= x * (n @ x) / (x @ x)  # orthogonal to x, zero-mean
    n *= np.sqrt((x @ x) / (n @ n) / 10)  # 10 dB below x
    assert metrics.si_sdr(x, 0.3 * (x + n), SR) == pytest.approx(10.0, abs=1e-6)


def test_si_sdr_matches_torchmetrics():
    requires("torchmetrics")
    from torchmetrics.functional import audio as functional

    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(4000) + 0.2
        y = rng.uniform(0.1, 2) * x + rng.uniform(0.05, 2) * rng.standard_normal(4000) - 0.1
        reference = functional.scale_invariant_signal_distortion_ratio(
            torch.from_numpy(y), torch.from_numpy(x), zero_mean=True
        )
        assert metrics.si_sdr(x, y, SR) == pytest.approx(reference.item(), abs=1e-6)


def test_waveform_l1_and_length_matching():
    x = noise(seconds=0.1)
    assert metrics.waveform_l1(x, x + 0.25, SR) == pytest.approx(0.25)
    assert metrics.waveform_l1(x, x[:-10], SR) == pytest.approx(np.abs(x[-10:]).sum() / len(x))


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)
    with pytest.raises(ImportError, match="`pesq` package"):
        metrics.pesq_wb(noise(), noise(), SR)


def test_speech_metrics_score_identical_speech_near_max_and_degraded_speech_lower():
    requires("visqol", "pesq", "pystoi")
    speech, rate = real_audio(ALSA_SPEECH)
    rng = np.random.default_rng(0)
    degraded = speech + np.std(speech) * rng.standard_normal(len(speech))  # 0 dB white noise
    for name, best, margin in [
        ("visqol", 4.5, 0.5),
        ("visqol_speech", 4.5, 0.5),
        ("pesq_wb", 4.5, 1.0),
        ("stoi", 0.99, 0.05),
    ]:
        function = metrics.METRICS[name][0]
        clean, noisy = function(speech, speech, rate), function(speech, degraded, rate)
        assert clean > best, name
        assert noisy < clean - margin, (name, noisy)


def test_alignment_lines_a_delayed_copy_up():
    x = noise(seconds=0.5)
    for lag in (37, -20):
        shifted = np.roll(x, lag)
        aligned, found = baselines.align(x, shifted, 100)
        assert found == lag
        inner = slice(50, -50)
        np.testing.assert_array_equal(aligned[inner], x[inner])
    assert baselines.align(x, np.roll(x, 300), 100)[1] != 300  # only within the bounded range


@pytest.fixture(scope="module")
def music():
    audio, rate = real_audio(EXAMPLES / "guit_harmonics.flac")
    return audio, rate


@pytest.mark.parametrize("codec,kbps", [("opus", 12), ("opus", 24), ("mp3", 16), ("mp3", 32)])
def test_baseline_bitrate_length_and_alignment(music, codec, kbps):
    requires("ffmpeg", "librosa")
    audio, rate = music
    decoded, true_kbps = baselines.encode_decode(audio, rate, codec, kbps)
    assert decoded.shape == audio.shape and decoded.dtype == np.float32
    assert true_kbps == pytest.approx(kbps, rel=0.15)
    _, raw_kbps = baselines.encode_decode(audio, rate, codec, kbps, align_delay=False)
    assert raw_kbps == true_kbps
    assert baselines.estimate_lag(audio, decoded, 2000) == 0
    assert metrics.si_sdr(audio, decoded, rate) > 3
    if codec == "opus" and kbps == 24:
        assert metrics.mel_distance(audio, decoded, rate) < metrics.mel_distance(
            audio, baselines.encode_decode(audio, rate, "opus", 6)[0], rate
        )


def test_parse_codec():
    from benchmarks.quality import parse_codec

    assert parse_codec("opus@6,12").rates == (6.0, 12.0)
    spec = parse_codec("rvqgan:models/x@1.78,7.75")
    assert (spec.kind, spec.arg, spec.rates) == ("rvqgan", "models/x", (1.78, 7.75))
    assert parse_codec("rvqgan:default").arg is None and parse_codec("rvqgan").rates == (None,)
    for bad in ("flac@8", "opus", "opus:x@8", "mp3@-1", "mp3@a"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_codec(bad)


def test_quality_report_renders_table_csv_and_plots(tmp_path):
    requires("ffmpeg", "librosa", "visqol", "pystoi", "matplotlib")
    from benchmarks.quality import main

    data = tmp_path / "data"
    for category, path in [
        ("music", EXAMPLES / "loop_amen.flac"),
        ("general", EXAMPLES / "ambi_choir.flac"),
        ("speech", ALSA_SPEECH),
    ]:
        audio, rate = real_audio(path)
        (data / category).mkdir(parents=True)
        sf.write(data / category / f"{path.stem}.flac", audio[: 2 * rate], rate)
    model_dir = tmp_path / "tiny"
    tiny_model(sampling_rate=44100, downsampling_ratios=[4, 8, 8]).save_pretrained(model_dir)  # hop 256: fast
    out = tmp_path / "out"
    main(
        [
            "--codec",
            "opus@12",
            "--codec",
            f"rvqgan:{model_dir}",
            "--data",
            str(data),
            "--out",
            str(out),
            "--workers",
            "1",
            "--max-seconds",
            "1.5",
            "--metrics",
            "mel,stft,si_sdr,visqol,stoi",
        ]
    )

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6
    assert {r["category"] for r in rows} == {"music", "general", "speech"}
    for row in rows:
        assert 1.4 < float(row["seconds"]) <= 1.5
        assert np.isfinite(float(row["mel"])) and np.isfinite(float(row["visqol"]))
        assert np.isfinite(float(row["stoi"])) == (row["category"] == "speech")
        assert np.isnan(float(row["pesq_wb"]))  # not asked for
    opus = [r for r in rows if r["codec"] == "opus"]
    rvq = [r for r in rows if r["codec"].startswith("rvqgan")]
    assert all(float(r["true_kbps"]) == pytest.approx(12, rel=0.3) for r in opus)
    assert all(float(r["true_kbps"]) > 0 for r in rvq)
    assert np.mean([float(r["mel"]) for r in opus]) < np.mean([float(r["mel"]) for r in rvq])  # random model

    table = (out / "summary.md").read_text()
    assert "| Codec | kbps | true kbps | Mel ↓ | STFT ↓ | ViSQOL ↑ | SI-SDR ↑ |" in table
    assert "### All files (3 clips)" in table and "### Speech (1 clips)" in table and "STOI ↑" in table
    assert "| opus | 12 |" in table and "| rvqgan (tiny) |" in table
    for name in ("quality.png", "mel.png", "visqol.png"):
        png = (out / "plots" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name


def test_make_eval_set_writes_clips_and_licenses(tmp_path):
    from rvqgan.evaluation.make_eval_set import CLIPS, build

    for paths in CLIPS.values():
        real_audio(paths[0])
    subset = {category: paths[:1] for category, paths in CLIPS.items()}
    written = build(tmp_path, seconds=0.5, categories=subset)
    assert sorted(p.parent.name for p in written) == ["general", "music", "speech"]
    for path in written:
        info = sf.info(path)
        assert info.channels == 1 and 0.3 < info.duration <= 0.5
    licenses = (tmp_path / "LICENSES.md").read_text()
    assert "CC0" in licenses and "GPL-2.0" in licenses and all(p.name.replace(".flac", "") in licenses for p in written)


@pytest.mark.parametrize("name", ["mel", "si_sdr", "stft"])
def test_evaluate_modules_give_the_mean_of_the_plain_functions(name):
    import evaluate
    from rvqgan.evaluation.metrics import METRICS

    rng = np.random.default_rng(0)
    references = [0.1 * rng.standard_normal(8000).astype(np.float32) for _ in range(2)]
    predictions = [0.5 * r + 0.01 * rng.standard_normal(8000).astype(np.float32) for r in references]
    metric = evaluate.load(str(Path(__file__).parent.parent / "evaluation" / "modules" / f"{name}.py"))
    result = metric.compute(predictions=predictions, references=references, sampling_rate=16000)
    expected = np.mean([METRICS[name][0](r, p, 16000) for r, p in zip(references, predictions)])
    assert result == {name: pytest.approx(expected, rel=1e-6)}


def test_unseen_set_reads_only_evaluation_only_packages_that_training_never_reads():
    from rvqgan.evaluation.make_eval_set import EVALUATION_ONLY, UNSEEN
    from rvqgan.training.make_default_data import ROOTS

    clips = [path for paths in UNSEEN.values() for path in paths]
    assert len(clips) >= 12 and set(UNSEEN) == {"music", "speech", "general"}
    assert all(any(root in path.parents for root in EVALUATION_ONLY) for path in clips)
    assert not [source for source in ROOTS.values() for root in EVALUATION_ONLY if root in (source, *source.parents)]


def test_make_default_data_refuses_an_evaluation_only_source(monkeypatch):
    from rvqgan.evaluation.make_eval_set import UNSEEN
    from rvqgan.training import make_default_data

    clip = UNSEEN["music"][0]
    monkeypatch.setattr(make_default_data, "candidates", lambda: {"music": [("tuxpaint", clip)]})
    with pytest.raises(SystemExit, match=f"training source tuxpaint reads {clip}: `tuxpaint-stamps-default` is for"):
        make_default_data.sources()
