"""The `rvqgan` command: real files in and out, bitrates on disk, and every kind of bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ALSA_SPEECH, EXAMPLES, perturbed, tiny_model
from rvqgan.modeling import RvqganConfig, RvqganModel
from safetensors.torch import load_file

from rvqgan import compress, decompress, load_model
from rvqgan.cli import main
from rvqgan.container import read, write
from rvqgan.models import DEFAULT_MODEL, weights_digest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tiny_model(sampling_rate=44100).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A stereo 48 kHz WAV and an MP3 made from it by ffmpeg."""
    folder = tmp_path_factory.mktemp("inputs")
    t = np.arange(int(48000 * 1.3)) / 48000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(folder / "stereo48k.wav", stereo, 48000)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", folder / "stereo48k.wav", "-b:a", "96k", folder / "song.mp3"], check=True
    )
    return folder


def run(*argv) -> int:
    return main([str(a) for a in argv])


def test_encode_then_decode_restores_rate_channels_and_exact_length(model_dir, inputs, tmp_path):
    sources = [inputs / "stereo48k.wav", inputs / "song.mp3"]
    assert run("encode", *sources, "-o", tmp_path / "rvq", "--model", model_dir, "--quiet") == 0
    assert (
        run("decode", tmp_path / "rvq", "-o", tmp_path / "audio", "--model", model_dir, "--quiet", "--format", "flac")
        == 0
    )
    for source in sources:
        original, decoded = sf.info(source), sf.info(tmp_path / "audio" / "rvq" / f"{source.stem}.flac")
        assert (decoded.samplerate, decoded.channels, decoded.frames) == (
            original.samplerate,
            original.channels,
            original.frames,
        )


def test_folders_are_searched_recursively_and_mirrored(model_dir, tmp_path):
    (tmp_path / "music" / "loops").mkdir(parents=True)
    for name in ("loop_amen.flac", "ambi_choir.flac"):
        (tmp_path / "music" / "loops" / name).write_bytes((EXAMPLES / name).read_bytes())
    (tmp_path / "music" / "notes.txt").write_text("not audio")
    assert run("encode", tmp_path / "music", "-o", tmp_path / "out", "--model", model_dir, "--quiet") == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.rvq")) == [
        "music/loops/ambi_choir.rvq",
        "music/loops/loop_amen.rvq",
    ]


def test_info_describes_a_file(model_dir, inputs, tmp_path, capsys):
    run("encode", inputs / "stereo48k.wav", "-o", tmp_path, "--model", model_dir, "--quiet", "--n-quantizers", "2")
    capsys.readouterr()
    assert run("info", tmp_path / "stereo48k.rvq") == 0
    line = capsys.readouterr().out
    assert "48000 Hz, 2 channel(s), 1.300 s, 2 codebooks" in line and "kbps on disk" in line


def codebook_sized_model() -> RvqganModel:
    """The real 44.1 kHz quantizer (9 x 1024 codes at 86.13 Hz) on a narrow encoder and decoder."""
    return perturbed(RvqganModel(RvqganConfig(encoder_hidden_size=4, decoder_hidden_size=64))).eval()


def test_bit_packed_files_are_within_one_percent_of_nominal():
    model = codebook_sized_model()
    audio, rate = sf.read(EXAMPLES / "guit_harmonics.flac", dtype="float32")
    audio = np.tile(audio, 3)[: 10 * rate]  # 10 s of real music
    data = compress(model, audio, rate, entropy=False)
    kbps = 8 * len(data) / 10 / 1000
    assert kbps == pytest.approx(model.config.n_quantizers_to_kbps(9), rel=0.01)


def test_entropy_coding_is_lossless_on_real_clips():
    model, _ = load_model()  # the shipped model: its token statistics are those of a trained model
    for clip in sorted(EXAMPLES.glob("*.flac")) + [ALSA_SPEECH]:
        audio, rate = sf.read(clip, dtype="float32", always_2d=True)
        packed, coded = compress(model, audio.T, rate, entropy=False), compress(model, audio.T, rate)
        header, codes = read(packed)
        assert np.array_equal(codes, read(coded)[1])
        # the bit-packed file is the nominal bitrate (within 1 %, above); both carry the same header. A trained
        # model uses its codebooks nearly evenly, so the coder gains from repeated codes only: a few % to ~10 %
        # on these clips (BENCHMARKS.md), never a loss
        assert len(coded) < len(packed), (clip.name, len(coded), len(packed))


def test_python_api_round_trip_keeps_shape_and_loudness_gain():
    model = tiny_model(sampling_rate=44100)
    audio = 0.05 * np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32)
    data = compress(model, audio, 32000, kbps=model.config.n_quantizers_to_kbps(2))
    header, codes = read(data)
    assert codes.shape[:2] == (2, 2) and header.gain_db < 0  # quiet input was turned up: the gain restores it
    restored, rate = decompress(model, data)
    assert rate == 32000 and restored.shape == (2, 30000) and restored.dtype == np.float32


def make_bad_inputs(folder: Path, model_dir: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error message must say)."""
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "nan.wav", np.full(4000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    data = good.read_bytes()
    (folder / "truncated.rvq").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (folder / "flipped.rvq").write_bytes(bytes(flipped))
    (folder / "version9.rvq").write_bytes(data[:4] + b"\x09" + data[5:])
    header, codes = read(data)
    other = write(type(header)(**{**header.__dict__, "model_id": "someone/else@sha256:0123456789abcdef"}), codes)
    (folder / "other_model.rvq").write_bytes(other)
    return {
        "corrupt": (folder / "corrupt.wav", "corrupt.wav"),
        "empty": (folder / "empty.wav", "empty.wav"),
        "nan": (folder / "nan.wav", "NaN"),
        "missing": (folder / "missing.wav", "no such file"),
        "truncated": (folder / "truncated.rvq", "truncated"),
        "flipped": (folder / "flipped.rvq", "checksum"),
        "version": (folder / "version9.rvq", "format version 9 is not supported"),
        "other_model": (folder / "other_model.rvq", "made by model 'someone/else"),
    }


@pytest.mark.parametrize(
    "case", ["corrupt", "empty", "nan", "missing", "truncated", "flipped", "version", "other_model"]
)
def test_bad_input_gives_one_clear_line_a_nonzero_exit_and_no_output(case, model_dir, inputs, tmp_path, capsys):
    run("encode", inputs / "stereo48k.wav", "-o", tmp_path / "good", "--model", model_dir, "--quiet")
    path, message = make_bad_inputs(tmp_path, model_dir, tmp_path / "good" / "stereo48k.rvq")[case]
    capsys.readouterr()
    command = "decode" if path.suffix == ".rvq" else "encode"
    assert run(command, path, "-o", tmp_path / "out", "--model", model_dir, "--quiet") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rvqgan: error")]
    assert len(errors) == 1 and str(path) in errors[0] and message in errors[0], errors
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_output_named_as_a_file_is_that_file(model_dir, inputs, tmp_path, capsys):
    """One input and an output ending in .rvq (encode) or .wav / .flac (decode) write that file; an existing folder
    of such a name stays a folder, and such a name with several inputs is refused before any work."""
    source = inputs / "stereo48k.wav"
    assert run("encode", source, "-o", tmp_path / "song.rvq", "--model", model_dir, "--quiet") == 0
    assert read((tmp_path / "song.rvq").read_bytes())[0].channels == 2
    assert run("decode", tmp_path / "song.rvq", "-o", tmp_path / "song.flac", "--model", model_dir, "--quiet") == 0
    assert sf.info(tmp_path / "song.flac").format == "FLAC" and sf.info(tmp_path / "song.flac").frames == 62400
    (tmp_path / "folder.rvq").mkdir()
    assert run("encode", source, "-o", tmp_path / "folder.rvq", "--model", model_dir, "--quiet") == 0
    assert (tmp_path / "folder.rvq" / "stereo48k.rvq").is_file()
    capsys.readouterr()
    two = [source, inputs / "song.mp3"]
    assert run("encode", *two, "-o", tmp_path / "both.rvq", "--model", model_dir, "--quiet") == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "both.rvq: names one output file" in error
    assert not (tmp_path / "both.rvq").exists()


def test_existing_output_is_refused_unless_forced(model_dir, inputs, tmp_path, capsys):
    target = tmp_path / "stereo48k.rvq"
    target.write_bytes(b"keep me")
    assert run("encode", inputs / "stereo48k.wav", "-o", tmp_path, "--model", model_dir, "--quiet") == 1
    assert "exists (use --force to overwrite)" in capsys.readouterr().err and target.read_bytes() == b"keep me"
    assert run("encode", inputs / "stereo48k.wav", "-o", tmp_path, "--model", model_dir, "--quiet", "--force") == 0
    assert read(target.read_bytes())[0].channels == 2


def test_console_script_exits_nonzero_on_an_unloadable_model(tmp_path):
    script = Path(sys.executable).with_name("rvqgan")
    result = subprocess.run(
        [script, "encode", EXAMPLES / "loop_amen.flac", "-o", tmp_path, "--model", tmp_path / "nope"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "rvqgan: error" in result.stderr and not list(tmp_path.iterdir())


def test_default_model_is_the_shipped_one():
    model, identity = load_model()
    weights = load_file(DEFAULT_MODEL / "model.safetensors")
    assert identity == f"default@sha256:{weights_digest(model)}" and not model.training
    assert model.config.sampling_rate == 44100 and model.config.n_codebooks == 9
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[name], tensor) for name, tensor in model.state_dict().items())
