import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import roundtrip  # noqa: E402
from conftest import ALSA_SPEECH, EXAMPLES, real_audio, tiny_model


def test_roundtrip_example_decodes_every_clip_at_every_bitrate(tmp_path, capsys):
    real_audio(ALSA_SPEECH)  # the example includes the speech clip: fail in CI if it is missing
    model = tiny_model(sampling_rate=44100)
    model.save_pretrained(tmp_path / "model")
    roundtrip.main(["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")])
    table = capsys.readouterr().out
    clips = sorted(EXAMPLES.glob("*.flac")) + [ALSA_SPEECH]
    for clip in clips:
        original = sf.info(clip)
        for n in (2, 3):
            kbps = f"{model.config.n_quantizers_to_kbps(n):.2f}"
            decoded = sf.info(tmp_path / "out" / f"{clip.stem}_{kbps}kbps.wav")
            assert decoded.samplerate == 44100 and decoded.frames == round(
                original.frames * 44100 / original.samplerate
            )
            (row,) = [line.split() for line in table.splitlines() if line.startswith(clip.name) and f" {kbps} " in line]
            assert 0 < float(row[5]) < 100  # the measured mel distance
    assert len(list((tmp_path / "out").glob("*kbps.wav"))) == 2 * len(clips)  # 6 and 9 exceed the tiny model's 4
    assert f"{len(clips)} clips" in table and f"model: {tmp_path / 'model'}@sha256:" in table


def test_roundtrip_example_runs_the_shipped_model_by_default(tmp_path, capsys):
    roundtrip.main(["--out", str(tmp_path)])
    assert "model: default@sha256:" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*_7.75kbps.wav"))) == len(list(EXAMPLES.glob("*.flac"))) + 1
