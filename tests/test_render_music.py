"""rvqgan.training.render_music: full-band, harmonic, deterministic soundfont renderings, and its missing-package
error."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rvqgan.evaluation.make_eval_set import EVALUATION_ONLY
from rvqgan.training import render_music
from rvqgan.training.render_music import INSTRUMENTS, PACKAGES, RATE, SOUNDFONT, render

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def fluidsynth():
    """A missing fluidsynth or soundfont is a failure in CI and a skip elsewhere."""
    if not (shutil.which("fluidsynth") and SOUNDFONT.exists()):
        message = f"fluidsynth or {SOUNDFONT} is missing (run scripts/system-packages.sh)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)


def cli(*args, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rvqgan.training.render_music", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def rendered(out: Path, seed: int) -> dict[str, bytes]:
    result = cli("--out", out, "--minutes", 0.2, "--seed", seed)
    assert result.returncode == 0, result.stderr[-2000:]
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def share_above(audio: np.ndarray, hz: float) -> float:
    """The fraction of the energy above `hz`."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    return power[np.fft.rfftfreq(len(audio), 1 / RATE) > hz].sum() / power.sum()


@pytest.fixture(scope="module")
def seed_0(fluidsynth, tmp_path_factory):
    return rendered(tmp_path_factory.mktemp("seed-0"), 0)


def test_files_are_44khz_mono_phrases_with_their_licence(seed_0, tmp_path):
    names = {f"soundfont-{i.name}-" for i in INSTRUMENTS}
    flacs = [name for name in seed_0 if name.endswith(".flac")]
    assert sorted(seed_0) == sorted(flacs + ["LICENSES.md"]) and len(flacs) >= 2
    seconds = 0.0
    for name in flacs:
        assert name[: name.rindex("-") + 1] in names
        (tmp_path / name).write_bytes(seed_0[name])
        info = sf.info(tmp_path / name)
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        assert 4 < info.duration < 14
        audio = sf.read(tmp_path / name)[0]
        assert 0.85 < np.abs(audio).max() < 0.9  # -1 dBFS
        assert np.abs(audio[-RATE // 10 :]).max() < 0.1  # the tail decays; trailing silence is cut
        seconds += info.duration
    assert seconds >= 12
    licences = seed_0["LICENSES.md"].decode()
    assert "`fluid-soundfont-gm`" in licences and "MIT" in licences and "render_music" in licences


def test_the_same_seed_gives_the_same_bytes_another_seed_others(seed_0, tmp_path):
    assert rendered(tmp_path / "again", 0) == seed_0
    other = rendered(tmp_path / "other", 1)
    assert not {name: data for name, data in other.items() if name.endswith(".flac")}.items() & seed_0.items()


def test_instruments_are_full_band_and_harmonic(fluidsynth, tmp_path):
    """One held note per instrument (middle of its register): all sound, several have real energy above 5 kHz; a
    violin's A4 has its strongest peaks at multiples of 440 Hz."""
    bright = 0
    for instrument in INSTRUMENTS:
        pitch = (instrument.low + instrument.high) // 2
        audio = render([(instrument.program, [(0.0, 3.0, pitch, 100)])], 120.0, tmp_path)
        assert len(audio) > RATE // 2, instrument.name
        bright += share_above(audio, 5000) > 1e-3
    assert bright >= 5
    audio = render([(40, [(0.0, 6.0, 69, 100)])], 120.0, tmp_path)[RATE // 2 : 5 * RATE // 2]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    peaks = [i for i in range(1, len(spectrum) - 1) if spectrum[i] == spectrum[max(0, i - 50) : i + 51].max()]
    strongest = freqs[sorted(peaks, key=lambda i: -spectrum[i])[:8]]
    f0s = np.arange(400.0, 480.0, 0.25)  # the fundamental the peaks fit best, as multiples
    misfit = [np.abs(strongest / f0 - np.maximum(1, np.round(strongest / f0))).max() for f0 in f0s]
    f0 = f0s[np.argmin(misfit)]
    harmonics = np.round(strongest / f0)
    assert min(misfit) < 0.05 and abs(f0 / 440 - 1) < 0.02, (f0, strongest)
    assert len(set(harmonics)) == 8 and share_above(audio, 5000) > 1e-4


def test_missing_fluidsynth_is_a_one_line_error(tmp_path):
    result = cli("--out", tmp_path / "out", env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "fluidsynth" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_soundfont_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda command: f"/usr/bin/{command}")
    monkeypatch.setattr(render_music, "SOUNDFONT", tmp_path / "none.sf2")
    with pytest.raises(SystemExit) as exit:
        render_music.main(["--out", str(tmp_path / "out"), "--minutes", "0.01"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "fluid-soundfont-gm" in error and "fluidsynth," not in error


def test_soundfont_and_fluidsynth_are_not_evaluation_only():
    assert PACKAGES == ["fluidsynth", "fluid-soundfont-gm"]
    assert not set(PACKAGES) & set(EVALUATION_ONLY.values())
    assert not any(root in SOUNDFONT.parents or root == SOUNDFONT for root in EVALUATION_ONLY)
