"""Bad and unusual input, table-driven, across the CLI, the Python API, the model loaders, the converter, the
tokenizer and the Space's upload handler.

A bad case must give our error (exit code 1, or a ValueError / OSError subclass of ours), one line naming the file or
argument and the problem, no traceback, nothing in the output folder and no existing file changed. A valid unusual
case must give back its exact rate, channel count and length.
"""

import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file
from test_container import with_field

from feature_extraction import AudioError, AudioTokenizer
from modeling_rvqgan import ModelLoadError
from modeling_rvqgan.convert import main as convert
from rvqgan import RvqFormatError, compress, decompress, load_model
from rvqgan.cli import main
from rvqgan.container import read, write

ROOT = Path(__file__).parent.parent
pytestmark = [pytest.mark.usefixtures("one_thread", "deadline"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def deadline(tmp_path_factory):
    """A read blocked on one of our FIFOs is released after 60 s (by opening its other end), so that a test that
    would hang fails instead."""
    stop = threading.Event()

    def release():
        if stop.wait(60):
            return
        for fifo in tmp_path_factory.getbasetemp().rglob("fifo.*"):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody is reading it
                pass

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def tone(channels: int, samples: int, rate: int) -> np.ndarray:
    """(samples, channels) float32: a different quiet sine per channel."""
    t = np.arange(samples) / rate
    return np.stack([0.2 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


VALID = {  # name -> (channels, samples, rate, soundfile subtype)
    "one_sample.wav": (1, 1, 8000, "FLOAT"),
    "stereo_one_sample.wav": (2, 1, 48000, "FLOAT"),
    "three_channels_22k.wav": (3, 6615, 22050, "PCM_16"),
    "int16_8k.wav": (1, 2000, 8000, "PCM_16"),
    "uint8_11k.wav": (1, 2205, 11025, "PCM_U8"),
    "hi_96k.flac": (2, 19200, 96000, "PCM_24"),
    "a b ü.wav": (1, 1600, 16000, "FLOAT"),
    "mono.ogg": (1, 22050, 44100, "VORBIS"),
    "silence.wav": (1, 44100, 44100, "PCM_16"),
}


def forge(data: bytes, **fields) -> bytes:
    for name, value in fields.items():
        data = with_field(data, name, value)
    return data


def make_models(folder: Path, model) -> None:
    """good/ and broken variants of it."""
    good = folder / "good"
    model.save_pretrained(good)
    config = json.loads((good / "config.json").read_text())
    for name in ("trunc", "shape", "more", "extra", "pickle", "badjson", "noconfig"):
        shutil.copytree(good, folder / name)
    weights = (good / "model.safetensors").read_bytes()
    (folder / "trunc" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (folder / "shape" / "config.json").write_text(json.dumps({**config, "codebook_size": 32}))
    (folder / "more" / "config.json").write_text(json.dumps({**config, "n_codebooks": 6}))
    tensors = load_file(good / "model.safetensors")
    save_file(
        {**tensors, "decoder.extra": torch.zeros(3)}, folder / "extra" / "model.safetensors", metadata={"format": "pt"}
    )
    (folder / "pickle" / "model.safetensors").unlink()
    torch.save(tensors, folder / "pickle" / "pytorch_model.bin")
    (folder / "badjson" / "config.json").write_text("{not json")
    (folder / "noconfig" / "config.json").unlink()
    (folder / "emptydir").mkdir()


def make_audio(folder: Path) -> None:
    (folder / "valid").mkdir(parents=True)
    sf.write(folder / "good.wav", tone(2, 24000, 48000), 48000, subtype="FLOAT")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio at all\n")
    sf.write(folder / "nan.wav", np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
    one_inf = tone(1, 4000, 16000)
    one_inf[1000] = np.inf
    sf.write(folder / "inf.wav", one_inf, 16000, subtype="FLOAT")
    sf.write(folder / "rate_1mhz.wav", tone(1, 1000, 1_000_000), 1_000_000, subtype="FLOAT")
    (folder / "noaudio.wav").mkdir()
    (folder / "noaudio.wav" / "notes.txt").write_text("no audio here")
    (folder / "emptydir").mkdir()
    for name in ("dup_a", "dup_b"):
        (folder / name).mkdir()
        shutil.copy(folder / "good.wav", folder / name / "x.wav")
    shutil.copy(folder / "good.wav", folder / "same.wav")
    sf.write(folder / "same.flac", tone(1, 4800, 48000), 48000)
    shutil.copy(folder / "good.wav", folder / "audio_named.rvq")  # an input whose output would be itself
    os.mkfifo(folder / "fifo.wav")
    for name, (channels, samples, rate, subtype) in VALID.items():
        sf.write(folder / "valid" / name, tone(channels, samples, rate), rate, subtype=subtype)


def make_rvq(folder: Path, model, identity: str) -> None:
    folder.mkdir()
    good = compress(model, tone(2, 24000, 48000).T, 48000, identity=identity)
    header, codes = read(good)
    rng = np.random.default_rng(0)
    files = {
        "good.rvq": good,
        "truncated.rvq": good[: len(good) // 2],
        "flipped.rvq": good[:40] + bytes([good[40] ^ 0x10]) + good[41:],
        "version9.rvq": good[:4] + b"\x09" + good[5:],
        "empty.rvq": b"",
        "wav.rvq": (folder.parent / "audio" / "good.wav").read_bytes(),
        "other_model.rvq": write(replace(header, model_id="someone/else@sha256:0123456789abcdef"), codes),
        "no_identity.rvq": write(replace(header, model_id=""), codes),
        "length_10x.rvq": forge(good, original_length=10 * header.original_length),
        "length_2e40.rvq": forge(good, original_length=1 << 40),
        "length_0.rvq": forge(good, original_length=0),
        "gain_1000db.rvq": forge(good, gain_db=1000.0),
        "gain_1e30db.rvq": forge(good, gain_db=1e30),
        "gain_nan.rvq": forge(good, gain_db=float("nan")),
        "rate_0.rvq": forge(good, sample_rate=0),
        "rate_1ghz.rvq": forge(good, sample_rate=10**9),
        "channels_0.rvq": forge(good, channels=0),
        "six_codebooks.rvq": write(replace(header, n_q=6), rng.integers(0, 64, (2, 6, header.frames))),
        "eight_bits.rvq": write(replace(header, bits=8), codes),
        "sneaky.wav": good,  # a .rvq file named like the output it decodes to
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "norvq").mkdir()
    (folder / "norvq" / "notes.txt").write_text("no .rvq here")
    os.mkfifo(folder / "fifo.rvq")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of audio/, rvq/ and models/ (a tiny 44.1 kHz model, good/, and broken copies of it)."""
    root = tmp_path_factory.mktemp("corpus")
    model = tiny_model(sampling_rate=44100)
    make_models(root / "models", model)
    model, identity = load_model(str(root / "models" / "good"))
    make_audio(root / "audio")
    make_rvq(root / "rvq", model, identity)
    return root


def snapshot(*folders: Path) -> dict:
    """Every file under the folders (hidden ones too) with its mode and a hash of its bytes."""
    return {
        p: (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file()
    }


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


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


@pytest.fixture(scope="module")
def model(corpus):
    return load_model(str(corpus / "models" / "good"))[0]


MONO = tone(1, 4410, 44100)[:, 0]
ALL_NAN, ONE_NAN, ONE_INF = np.full(4410, np.nan, np.float32), MONO.copy(), MONO.copy()
ONE_NAN[100], ONE_INF[200] = np.nan, -np.inf

# (id, call(model, corpus), error type, words of the message)
# fmt: off
API_CASES = [
    ("compress-all-nan", lambda m, c: compress(m, ALL_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("compress-one-nan", lambda m, c: compress(m, ONE_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("compress-one-inf", lambda m, c: compress(m, ONE_INF, 44100), AudioError, ["`audio`", "infinite"]),
    ("compress-rate-0", lambda m, c: compress(m, MONO, 0), AudioError, ["`sampling_rate`", "0"]),
    ("compress-rate-negative", lambda m, c: compress(m, MONO, -44100), AudioError, ["`sampling_rate`", "-44100"]),
    ("compress-rate-fraction", lambda m, c: compress(m, MONO, 44100.5), AudioError, ["`sampling_rate`", "44100.5"]),
    ("compress-rate-nan", lambda m, c: compress(m, MONO, float("nan")), AudioError, ["`sampling_rate`", "nan"]),
    ("compress-rate-string", lambda m, c: compress(m, MONO, "44100"), AudioError, ["`sampling_rate`", "'44100'"]),
    ("compress-rate-bool", lambda m, c: compress(m, MONO, True), AudioError, ["`sampling_rate`", "True"]),
    ("compress-rate-none", lambda m, c: compress(m, MONO, None), AudioError, ["`sampling_rate`", "None"]),
    ("compress-rate-1mhz", lambda m, c: compress(m, MONO, 1_000_000), AudioError, ["1000000 Hz", "768000"]),
    ("compress-samples-channels", lambda m, c: compress(m, tone(2, 4410, 44100), 44100), AudioError,
     ["`audio`", "(4410, 2)", "transpose"]),
    ("compress-3d", lambda m, c: compress(m, MONO[None, None], 44100), AudioError, ["`audio`", "(1, 1, 4410)"]),
    ("compress-empty", lambda m, c: compress(m, np.zeros(0, np.float32), 44100), AudioError,
     ["Empty audio", "`audio`"]),
    ("compress-strings", lambda m, c: compress(m, np.array(["a", "b"]), 44100), AudioError,
     ["`audio`", "real numbers"]),
    ("compress-complex", lambda m, c: compress(m, MONO.astype(complex), 44100), AudioError, ["`audio`", "complex"]),
    ("compress-kbps-and-n-quantizers", lambda m, c: compress(m, MONO, 44100, n_quantizers=2, kbps=1.0), ValueError,
     ["`n_quantizers`", "`kbps`", "not both"]),
    ("compress-n-quantizers-0", lambda m, c: compress(m, MONO, 44100, n_quantizers=0), ValueError,
     ["`n_quantizers`", "[1, 4]"]),
    ("compress-n-quantizers-9", lambda m, c: compress(m, MONO, 44100, n_quantizers=9), ValueError,
     ["`n_quantizers`", "[1, 4]"]),
    ("compress-n-quantizers-float", lambda m, c: compress(m, MONO, 44100, n_quantizers=2.5), ValueError,
     ["`n_quantizers`", "2.5"]),
    ("compress-kbps-negative", lambda m, c: compress(m, MONO, 44100, kbps=-1), ValueError,
     ["`kbps` -1", "out of range"]),
    ("compress-kbps-string", lambda m, c: compress(m, MONO, 44100, kbps="6"), ValueError, ["`kbps`", "'6'"]),
    ("decompress-other-model",
     lambda m, c: decompress(tiny_model(seed=1, sampling_rate=44100), (c / "rvq/good.rvq").read_bytes()),
     RvqFormatError, ["made by model", "not by 'unsaved@sha256:"]),
    ("decompress-other-identity", lambda m, c: decompress(m, (c / "rvq/good.rvq").read_bytes(), "x@sha256:0123"),
     RvqFormatError, ["made by model", "not by 'x@sha256:0123'"]),
    ("decompress-no-identity", lambda m, c: decompress(m, (c / "rvq/no_identity.rvq").read_bytes()), RvqFormatError,
     ["made by model ''"]),
    ("decompress-garbage", lambda m, c: decompress(m, b"\x00" * 100), RvqFormatError, ["not an .rvq file"]),
    ("decompress-length-10x", lambda m, c: decompress(m, (c / "rvq/length_10x.rvq").read_bytes()), RvqFormatError,
     ["original_length = 240000", "does not fit"]),
    ("decompress-length-2e40", lambda m, c: decompress(m, (c / "rvq/length_2e40.rvq").read_bytes()), RvqFormatError,
     ["original_length = 1099511627776"]),
    ("decompress-gain-1000db", lambda m, c: decompress(m, (c / "rvq/gain_1000db.rvq").read_bytes()), RvqFormatError,
     ["gain_db = 1000"]),
    ("decompress-gain-1e30db", lambda m, c: decompress(m, (c / "rvq/gain_1e30db.rvq").read_bytes()), RvqFormatError,
     ["gain_db = 1e+30"]),
    ("load-model-missing", lambda m, c: load_model(str(c / "models/missing")), ModelLoadError,
     ["missing", "no such directory"]),
    ("load-model-truncated", lambda m, c: load_model(str(c / "models/trunc")), ModelLoadError,
     ["trunc", "incomplete metadata"]),
    ("load-model-shapes", lambda m, c: load_model(str(c / "models/shape")), ModelLoadError, ["shape", "4 mismatched"]),
    ("load-model-more-codebooks", lambda m, c: load_model(str(c / "models/more")), ModelLoadError,
     ["more", "10 missing"]),
    ("load-model-unexpected-key", lambda m, c: load_model(str(c / "models/extra")), ModelLoadError,
     ["extra", "1 unexpected"]),
    ("load-model-pickle-only", lambda m, c: load_model(str(c / "models/pickle")), ModelLoadError,
     ["pickle", "model.safetensors"]),
    ("load-model-bad-json", lambda m, c: load_model(str(c / "models/badjson")), ModelLoadError, ["badjson", "JSON"]),
    ("load-model-device-bogus", lambda m, c: load_model(str(c / "models/good"), "bogus"), ValueError,
     ["device 'bogus'"]),
    ("load-model-device-cuda-99", lambda m, c: load_model(str(c / "models/good"), "cuda:99"), ValueError,
     ["device 'cuda:99'"]),
    ("tokenizer-model-truncated", lambda m, c: AudioTokenizer(str(c / "models/trunc")), ModelLoadError,
     ["trunc", "incomplete"]),
    ("tokenizer-model-more-codebooks", lambda m, c: AudioTokenizer(str(c / "models/more")), ModelLoadError,
     ["more", "missing"]),
    ("tokenizer-kbps-and-n-quantizers", lambda m, c: AudioTokenizer(m, n_quantizers=2, kbps=1.0), ValueError,
     ["not both"]),
    ("tokenizer-undecodable-bytes", lambda m, c: AudioTokenizer(m)({"audio": b"RIFF garbage" * 9}), AudioError,
     ["108 bytes of audio", "unreadable or corrupt"]),
    ("tokenizer-corrupt-file", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/corrupt.wav")), AudioError,
     ["corrupt.wav", "unreadable or corrupt"]),
    ("tokenizer-missing-file", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/missing.wav")), AudioError,
     ["missing.wav", "no such file"]),
    ("tokenizer-fifo", lambda m, c: AudioTokenizer(m).tokenize(str(c / "audio/fifo.wav")), AudioError,
     ["fifo.wav", "not a regular file"]),
    ("tokenizer-rate-0", lambda m, c: AudioTokenizer(m).tokenize(MONO, 0), AudioError, ["`sampling_rate`", "0"]),
    ("tokenizer-rate-in-cell",
     lambda m, c: AudioTokenizer(m)({"audio": {"array": MONO, "sampling_rate": "x"}}), AudioError,
     ["`sampling_rate`", "'x'"]),
    ("tokenizer-nan", lambda m, c: AudioTokenizer(m).tokenize(ONE_NAN, 44100), AudioError, ["`audio`", "NaN"]),
    ("tokenizer-samples-channels", lambda m, c: AudioTokenizer(m).tokenize(tone(2, 4410, 44100), 44100), AudioError,
     ["`audio`", "transpose"]),
]
# fmt: on


@pytest.mark.parametrize("call, error, words", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_api_bad_input(model, corpus, call, error, words):
    before = snapshot(corpus)
    with pytest.raises(error) as raised:
        call(model, corpus)
    assert raised.type.__module__.split(".")[0] in ("rvqgan", "feature_extraction", "modeling_rvqgan", "builtins")
    message = one_line(str(raised.value))
    assert all(word in message for word in words), message
    assert snapshot(corpus) == before


def test_api_takes_integral_float_and_numpy_rates_ints_scaled_lists_and_tensors(model):
    reference = compress(model, MONO, 44100)
    for rate in (44100.0, np.float32(44100.0), np.int64(44100)):
        assert compress(model, MONO, rate) == reference
    assert compress(model, MONO.tolist(), 44100) == reference
    assert compress(model, torch.from_numpy(MONO), 44100) == reference
    pcm = np.round(MONO * 32767).astype(np.int16)
    assert compress(model, pcm, 44100) == compress(model, pcm / np.float32(32768), 44100)
    decoded, rate = decompress(model, compress(model, pcm, 22050.0, normalize=False))
    assert rate == 22050 and decoded.shape == (1, 4410) and np.abs(decoded).max() < 1  # not 32767 times too loud
    tokenizer = AudioTokenizer(model)
    np.testing.assert_array_equal(tokenizer.tokenize(MONO, 44100.0), tokenizer.tokenize(MONO, 44100))


MALICIOUS = """
class Payload:
    def __reduce__(self):
        return (open, ({marker!r}, "w"))
"""


def converter_inputs(corpus: Path, folder: Path) -> dict[str, Path]:
    """Checkpoints `--from descript` must refuse."""
    folder.mkdir(exist_ok=True)
    (folder / "garbage.pth").write_bytes(np.random.default_rng(0).bytes(3000))
    namespace = {}
    exec(MALICIOUS.format(marker=str(folder / "pwned")), namespace)
    (folder / "malicious.pth").write_bytes(pickle.dumps({"state_dict": namespace["Payload"]()}))
    torch.save({"state_dict": {"w": torch.zeros(100)}, "metadata": {"kwargs": {}}}, folder / "whole.pth")
    (folder / "truncated.pth").write_bytes((folder / "whole.pth").read_bytes()[:300])
    torch.save([1, 2, 3], folder / "list.pth")
    kwargs = dict(
        encoder_dim=8,
        encoder_rates=[2, 4],
        decoder_dim=16,
        n_codebooks=2,
        codebook_size=64,
        codebook_dim=4,
        sample_rate=16000,
    )
    torch.save(
        {"state_dict": {"encoder.block.x.y": torch.zeros(1)}, "metadata": {"kwargs": kwargs}}, folder / "badkey.pth"
    )
    torch.save({"state_dict": {}, "metadata": {"kwargs": {"encoder_dim": 8}}}, folder / "nokwargs.pth")
    return {p.stem: p for p in folder.glob("*.pth")}


# fmt: off
CONVERTER_CASES = [  # (id, arguments, words); {C} checkpoints, {M} models
    ("garbage", "--from descript {C}/garbage.pth", ["garbage.pth", "not a readable PyTorch checkpoint"]),
    ("malicious", "--from descript {C}/malicious.pth", ["malicious.pth", "not a readable PyTorch checkpoint"]),
    ("truncated", "--from descript {C}/truncated.pth", ["truncated.pth", "not a readable PyTorch checkpoint"]),
    ("not-a-dict", "--from descript {C}/list.pth", ["list.pth", "not a DAC checkpoint"]),
    ("bad-key", "--from descript {C}/badkey.pth", ["badkey.pth", "not a DAC checkpoint"]),
    ("missing-kwargs", "--from descript {C}/nokwargs.pth", ["nokwargs.pth", "not a DAC checkpoint", "KeyError"]),
    ("missing-pth", "--from descript {C}/missing.pth", ["missing.pth", "No such file"]),
    ("to-dac-truncated", "--to dac {M}/trunc", ["trunc", "incomplete metadata"]),
    ("to-dac-more-codebooks", "--to dac {M}/more", ["more", "10 missing"]),
    ("to-dac-pickle-only", "--to dac {M}/pickle", ["pickle", "model.safetensors"]),
    ("to-dac-missing", "--to dac {M}/missing", ["missing", "no such directory"]),
    ("from-dac-truncated", "--from dac {M}/trunc", ["trunc", "incomplete metadata"]),
    ("from-dac-extra-key", "--from dac {M}/extra", ["extra", "1 unexpected (decoder.extra)"]),
    ("output-is-the-input", "--to dac {M}/good {M}/good", ["good", "is the input"]),
]
# fmt: on


@pytest.mark.parametrize(
    "arguments, words", [case[1:] for case in CONVERTER_CASES], ids=[case[0] for case in CONVERTER_CASES]
)
def test_converter_bad_input(corpus, tmp_path, capsys, arguments, words):
    checkpoints = converter_inputs(corpus, tmp_path / "checkpoints")
    argv = arguments.format(C=tmp_path / "checkpoints", M=corpus / "models").split()
    argv += [] if len(argv) == 4 else [str(tmp_path / "out")]
    before = snapshot(corpus, tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        convert(argv)
    message = one_line(str(exit_info.value.code))
    assert message.startswith("error: ") and all(word in message for word in words), message
    assert snapshot(corpus, tmp_path) == before and not (tmp_path / "out").exists()
    assert not (tmp_path / "checkpoints" / "pwned").exists() and checkpoints


@pytest.fixture(scope="module")
def space_app():
    for name in ("gradio", "librosa", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name}")
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "spaces_demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


# fmt: off
SPACE_CASES = [  # (id, file in audio/, words)
    ("corrupt", "corrupt.wav", ["corrupt.wav", "unreadable or corrupt"]),
    ("empty", "empty.wav", ["empty.wav", "unreadable or corrupt"]),
    ("text", "text.wav", ["text.wav", "unreadable or corrupt"]),
    ("nan", "nan.wav", ["nan.wav", "NaN"]),
    ("one-inf", "inf.wav", ["inf.wav", "infinite"]),
    ("too-short", "valid/one_sample.wav", ["one_sample.wav", "shorter than 0.1 s"]),
    ("fifo", "fifo.wav", ["fifo.wav", "not a regular file"]),
    ("missing", "missing.wav", ["missing.wav", "no such file"]),
]
# fmt: on


@pytest.mark.parametrize("name, words", [case[1:] for case in SPACE_CASES], ids=[case[0] for case in SPACE_CASES])
def test_space_upload_handler_bad_input(space_app, corpus, name, words):
    before = snapshot(corpus)
    with pytest.raises(space_app.gr.Error) as raised:
        space_app.load_clip(str(corpus / "audio" / name))
    message = one_line(raised.value.message)
    assert all(word in message for word in words) and str(corpus) not in message, message  # the name, not our path
    assert snapshot(corpus) == before


@pytest.mark.parametrize("name", ["three_channels_22k.wav", "hi_96k.flac", "uint8_11k.wav", "mono.ogg"])
def test_space_upload_handler_keeps_rate_and_length_of_unusual_files(space_app, corpus, name):
    channels, samples, rate, _ = VALID[name]
    audio, got_rate, notices = space_app.load_clip(str(corpus / "audio" / "valid" / name))
    assert (audio.shape, audio.dtype, got_rate) == ((samples,), np.float32, rate)
    assert (f"Mixed down from {channels} channels to mono." in notices) == (channels > 1)


def test_space_refuses_a_model_that_does_not_fit_its_weights(space_app, corpus):
    with pytest.raises(ModelLoadError, match="more: model.safetensors does not fit config.json"):
        space_app.build_demo([str(corpus / "models" / "more")])


FORGED = {
    "channels": [0, 1, 3, 0xFFFF],
    "sample_rate": [0, 1, 8000, 44100, 768000, 768001, 0xFFFFFFFF],
    "original_length": [0, 1, 23999, 24000, 24001, 25000, 48000, 240000, 1 << 40, (1 << 64) - 1],
    "n_q": [0, 1, 3, 5, 255],
    "bits": [0, 5, 7, 16],
    "frames": [0, 1, 688, 689, 691, 692, 10**6, 0xFFFFFFFF],
    "gain_db": [-1e30, -1000.0, -120.5, -120.0, -3.5, 119.9, 121.0, 1e30, float("inf"), float("nan")],
    "flags": [0, 2, 255],
}


def decodes_as_declared(model, data: bytes) -> bool:
    """Our error (False), or audio of exactly the declared shape, finite, decoded within 256 MB of numpy memory."""
    tracemalloc.start()
    try:
        audio, rate = decompress(model, data)
    except RvqFormatError:
        return False
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    header, _ = read(data)
    assert audio.shape == (header.channels, header.original_length) and rate == header.sample_rate
    assert np.isfinite(audio).all() and peak < 256 << 20
    return True


def test_fuzz_forged_header_fields_decode_as_declared_or_raise_our_error(model, corpus):
    good = (corpus / "rvq" / "good.rvq").read_bytes()
    assert decodes_as_declared(model, good)
    accepted = 0
    for name, values in FORGED.items():
        for value in values:
            accepted += decodes_as_declared(model, forge(good, **{name: value}))
    rng = np.random.default_rng(7)
    for _ in range(150):  # several fields forged at once
        fields = {name: values[rng.integers(len(values))] for name, values in FORGED.items() if rng.random() < 0.4}
        accepted += decodes_as_declared(model, forge(good, **fields))
    assert accepted >= 5  # forgeries within the bounds (a length a sample longer, another gain) still decode
