"""Bad and unusual input to the `rvqgan` command (encode, decode, info), table-driven: see `bad_input_corpus`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_input_corpus import VALID, one_line, snapshot, tone

from rvqgan import compress, load_model
from rvqgan.cli import main

ROOT = Path(__file__).parent.parent
pytestmark = [pytest.mark.usefixtures("one_thread", "deadline"), pytest.mark.filterwarnings("ignore::UserWarning")]

# (id, arguments, words the one line must hold); {A} audio, {R} rvq, {M} models, {O} the output folder
# fmt: off
CLI_CASES = [
    ("encode-corrupt", "encode {A}/corrupt.wav", ["corrupt.wav", "unreadable or corrupt"]),
    ("encode-empty", "encode {A}/empty.wav", ["empty.wav", "unreadable or corrupt"]),
    ("encode-text", "encode {A}/text.wav", ["text.wav", "unreadable or corrupt"]),
    ("encode-nan", "encode {A}/nan.wav", ["nan.wav", "NaN"]),
    ("encode-one-inf", "encode {A}/inf.wav", ["inf.wav", "infinite"]),
    ("encode-missing", "encode {A}/missing.wav", ["missing.wav", "no such file"]),
    ("encode-fifo", "encode {A}/fifo.wav", ["fifo.wav", "not a regular file"]),
    ("encode-device-file", "encode /dev/null", ["/dev/null", "not a regular file"]),
    ("encode-rate-1mhz", "encode {A}/rate_1mhz.wav", ["rate_1mhz.wav", "1000000 Hz"]),
    ("encode-folder-without-audio", "encode {A}/noaudio.wav", ["noaudio.wav", "holds no audio files"]),
    ("encode-empty-folder", "encode {A}/emptydir", ["emptydir", "holds no audio files"]),
    ("encode-output-is-the-input", "encode {A}/audio_named.rvq -o {A} --force", ["audio_named.rvq", "is an input"]),
    ("encode-two-inputs-one-output", "encode {A}/dup_a/x.wav {A}/dup_b/x.wav", ["x.rvq", "dup_a/x.wav", "dup_b/x.wav"]),
    ("encode-same-stem", "encode {A}/same.wav {A}/same.flac", ["same.rvq", "same.wav", "same.flac"]),
    ("encode-output-is-a-file", "encode {A}/good.wav -o {A}/good.wav --force", ["good.wav", "must be a folder"]),
    ("encode-existing-output", "encode {A}/good.wav -o {R}", ["good.rvq", "exists (use --force to overwrite)"]),
    ("encode-n-quantizers-0", "encode {A}/good.wav --n-quantizers 0", ["n_quantizers", "[1, 4]"]),
    ("encode-n-quantizers-99", "encode {A}/good.wav --n-quantizers 99", ["n_quantizers", "[1, 4]"]),
    ("encode-kbps-1000", "encode {A}/good.wav --kbps 1000", ["1000", "out of range"]),
    ("encode-kbps-nan", "encode {A}/good.wav --kbps nan", ["nan", "out of range"]),
    ("encode-device-bogus", "encode {A}/good.wav --device bogus", ["device 'bogus'"]),
    ("encode-device-cuda-99", "encode {A}/good.wav --device cuda:99", ["device 'cuda:99'"]),
    ("model-missing", "encode {A}/good.wav --model {M}/missing", ["missing", "no such directory"]),
    ("model-truncated", "encode {A}/good.wav --model {M}/trunc", ["trunc", "incomplete metadata"]),
    ("model-shapes", "encode {A}/good.wav --model {M}/shape", ["shape", "4 mismatched", "[64, 4] for [32, 4]"]),
    ("model-more-codebooks", "encode {A}/good.wav --model {M}/more", ["more", "10 missing", "quantizers.4"]),
    ("model-unexpected-key", "encode {A}/good.wav --model {M}/extra", ["extra", "1 unexpected (decoder.extra)"]),
    ("model-pickle-only", "encode {A}/good.wav --model {M}/pickle", ["pickle", "no file named model.safetensors"]),
    ("model-bad-json", "encode {A}/good.wav --model {M}/badjson", ["badjson", "not a valid JSON"]),
    ("model-no-config", "encode {A}/good.wav --model {M}/noconfig", ["noconfig", "config.json"]),
    ("model-empty-folder", "decode {R}/good.rvq --model {M}/emptydir", ["emptydir", "cannot load the model"]),
    ("decode-truncated", "decode {R}/truncated.rvq", ["truncated.rvq", "truncated"]),
    ("decode-flipped", "decode {R}/flipped.rvq", ["flipped.rvq", "checksum"]),
    ("decode-version", "decode {R}/version9.rvq", ["version9.rvq", "format version 9"]),
    ("decode-empty", "decode {R}/empty.rvq", ["empty.rvq", "not an .rvq file"]),
    ("decode-a-wav", "decode {R}/wav.rvq", ["wav.rvq", "not an .rvq file"]),
    ("decode-other-model", "decode {R}/other_model.rvq", ["other_model.rvq", "made by model 'someone/else"]),
    ("decode-no-identity", "decode {R}/no_identity.rvq", ["no_identity.rvq", "made by model ''"]),
    ("decode-length-10x", "decode {R}/length_10x.rvq", ["length_10x.rvq", "original_length = 240000", "does not fit"]),
    ("decode-length-2e40", "decode {R}/length_2e40.rvq", ["length_2e40.rvq", "original_length = 1099511627776"]),
    ("decode-length-0", "decode {R}/length_0.rvq", ["length_0.rvq", "original_length = 0 is out of range"]),
    ("decode-gain-1000db", "decode {R}/gain_1000db.rvq", ["gain_1000db.rvq", "gain_db = 1000 is out of range"]),
    ("decode-gain-1e30db", "decode {R}/gain_1e30db.rvq", ["gain_1e30db.rvq", "gain_db = 1e+30 is out of range"]),
    ("decode-gain-nan", "decode {R}/gain_nan.rvq", ["gain_nan.rvq", "gain_db = nan is not finite"]),
    ("decode-rate-0", "decode {R}/rate_0.rvq", ["rate_0.rvq", "sample_rate = 0 is out of range"]),
    ("decode-rate-1ghz", "decode {R}/rate_1ghz.rvq", ["rate_1ghz.rvq", "sample_rate = 1000000000 is out of range"]),
    ("decode-channels-0", "decode {R}/channels_0.rvq", ["channels_0.rvq", "channels = 0 is out of range"]),
    ("decode-six-codebooks", "decode {R}/six_codebooks.rvq", ["six_codebooks.rvq", "6 codebooks of 6 bits do not fit"]),
    ("decode-eight-bits", "decode {R}/eight_bits.rvq", ["eight_bits.rvq", "of 8 bits do not fit"]),
    ("decode-fifo", "decode {R}/fifo.rvq", ["fifo.rvq", "not a regular file"]),
    ("decode-missing", "decode {R}/missing.rvq", ["missing.rvq", "no such file"]),
    ("decode-folder-without-rvq", "decode {R}/norvq", ["norvq", "holds no .rvq files"]),
    ("decode-output-is-the-input", "decode {R}/sneaky.wav -o {R} --force", ["sneaky.wav", "is an input"]),
    ("info-length-0", "info {R}/length_0.rvq", ["length_0.rvq", "original_length = 0 is out of range"]),
    ("info-gain-1e30db", "info {R}/gain_1e30db.rvq", ["gain_1e30db.rvq", "gain_db = 1e+30"]),
    ("info-truncated", "info {R}/truncated.rvq", ["truncated.rvq", "truncated"]),
    ("info-fifo", "info {R}/fifo.rvq", ["fifo.rvq", "not a regular file"]),
    ("info-folder", "info {R}/norvq", ["norvq", "not a regular file"]),
    ("info-missing", "info {R}/missing.rvq", ["missing.rvq", "no such file"]),
]
# fmt: on


@pytest.mark.parametrize("arguments, words", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input(corpus, tmp_path, capsys, arguments, words):
    places = {"A": corpus / "audio", "R": corpus / "rvq", "M": corpus / "models", "O": tmp_path / "out"}
    argv = arguments.format(**places).split()
    if argv[0] != "info":
        argv += ["--quiet"] + ([] if "--model" in argv else ["--model", str(corpus / "models" / "good")])
        argv += [] if "-o" in argv else ["-o", str(tmp_path / "out")]
    before = snapshot(corpus, tmp_path)
    capsys.readouterr()
    assert main(argv) == 1  # an exception here would be a traceback
    line = one_line(capsys.readouterr().err)
    assert line.startswith("rvqgan: error: ") and all(word in line for word in words), line
    assert snapshot(corpus, tmp_path) == before  # nothing written, nothing changed, no temporary file left


@pytest.mark.parametrize("name", list(VALID))
def test_cli_round_trip_of_unusual_files_gives_back_rate_channels_and_length(corpus, tmp_path, name):
    source = corpus / "audio" / "valid" / name
    model = ["--model", str(corpus / "models" / "good"), "--quiet"]
    assert main(["encode", str(source), "-o", str(tmp_path / "rvq"), *model]) == 0
    assert (
        main(
            ["decode", str(tmp_path / "rvq" / Path(name).with_suffix(".rvq").name), "-o", str(tmp_path / "out"), *model]
        )
        == 0
    )
    original, decoded = sf.info(source), sf.info(tmp_path / "out" / Path(name).with_suffix(".wav").name)
    assert (decoded.samplerate, decoded.channels, decoded.frames) == (
        original.samplerate,
        original.channels,
        original.frames,
    )
    assert np.isfinite(sf.read(tmp_path / "out" / Path(name).with_suffix(".wav").name)[0]).all()


def test_outputs_honour_the_umask(corpus, tmp_path):
    previous = os.umask(0o022)
    try:
        model = ["--model", str(corpus / "models" / "good"), "--quiet"]
        assert main(["encode", str(corpus / "audio" / "good.wav"), "-o", str(tmp_path), *model]) == 0
        assert (
            main(["decode", str(tmp_path / "good.rvq"), "-o", str(tmp_path / "out"), *model, "--format", "flac"]) == 0
        )
    finally:
        os.umask(previous)
    assert [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "good.rvq", tmp_path / "out" / "good.flac")] == [
        "0o644"
    ] * 2


def test_ctrl_c_during_a_long_decode_leaves_no_file(corpus, tmp_path, capsys, monkeypatch):
    from rvqgan import codec

    def interrupted(*args, **kwargs):
        yield next(iter_decode(*args, **kwargs))
        raise KeyboardInterrupt

    iter_decode = codec.iter_decode
    monkeypatch.setattr(codec, "iter_decode", interrupted)
    capsys.readouterr()
    argv = [
        "decode",
        str(corpus / "rvq" / "good.rvq"),
        "-o",
        str(tmp_path),
        "--model",
        str(corpus / "models" / "good"),
        "--quiet",
    ]
    assert main(argv) == 130
    assert one_line(capsys.readouterr().err) == "rvqgan: interrupted" and not list(tmp_path.iterdir())


FILE_SIZE_LIMIT = """
import resource, sys
from rvqgan.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.RLIM_INFINITY))  # .rvq and .wav outputs are larger
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_write_that_fails_half_way_gives_one_line_and_leaves_no_file(corpus, tmp_path, command):
    source = corpus / ("audio/good.wav" if command == "encode" else "rvq/good.rvq")
    argv = [command, source, "-o", tmp_path, "--model", corpus / "models" / "good", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    line = one_line(result.stderr)
    reason = "File too large" if command == "encode" else "System error"  # libsndfile's words for EFBIG
    assert result.returncode == 1 and f"cannot write it ({reason}" in line, result.stderr
    assert not list(tmp_path.iterdir())


def test_a_file_compressed_with_the_default_identity_decodes_with_the_command(corpus, tmp_path):
    model, _ = load_model(str(corpus / "models" / "good"))
    audio = tone(2, 4800, 48000).T
    (tmp_path / "api.rvq").write_bytes(compress(model, audio, 48000))
    assert (
        main(
            [
                "decode",
                str(tmp_path / "api.rvq"),
                "-o",
                str(tmp_path / "out"),
                "--model",
                str(corpus / "models" / "good"),
                "--quiet",
            ]
        )
        == 0
    )
    assert sf.read(tmp_path / "out" / "api.wav", always_2d=True)[0].shape == (4800, 2)
